"""The job process: data, models, LoRA, losses, the training loop. The only torch user."""

import logging

# bitsandbytes (the `qlora` extra) logs a warning on import, on CPUs with AVX-512 BF16,
# that an optional CPU kernel for 4-bit matmuls needs the `kernels` package from the
# hub. ftmatrix quantises on CUDA only, and peft imports bitsandbytes whenever it is
# installed: without this every job log, and the runner's terminal, would carry it.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
