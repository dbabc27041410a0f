"""Applications built on the library: the command line (`cli`), default and shipped
checkpoints (`defaults`), the notebooks' shared set-up (`notebook`), plots (`viz`),
notebook widgets (`widgets`) and the Gradio demo (`demo`, behind the [demo] extra).
The top layer: nothing in the library imports it."""
