"""`accelerate launch --config_file configs/accelerate/fsdp.yaml tests/fsdp_on_cpu.py train ...`:
the plume-lite CLI with accelerate's FSDP applied to CPU processes (gloo), for tests.

accelerate 1.15 never routes a CPU launch to FSDP (AcceleratorState only switches to
FSDP from a GPU-type distributed state; on CPUs it stays MULTI_CPU and ignores the
plugin). torch's FSDP2 itself runs on CPU over gloo, so this shim sets, after the
Accelerator is built, what accelerate would have set on GPUs: distributed type FSDP
(in both of its shared states) and the plugin read from the launcher's FSDP_* variables.
Everything after that (prepare, clip_grad_norm_, save_state, load_state,
get_state_dict) is accelerate's own FSDP code, run by plume_lite's training loop."""

import os
import sys

from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_init = Accelerator.__init__


def _init_fsdp_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    use_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if use_fsdp and self.state.distributed_type == DistributedType.MULTI_CPU:
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.state.distributed_type = DistributedType.FSDP
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from FSDP_* of the launcher


Accelerator.__init__ = _init_fsdp_on_cpu

if __name__ == "__main__":
    from plume_lite.apps.cli import main

    sys.argv[0] = "plume-lite"
    sys.exit(main())
