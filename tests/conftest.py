import os

# Two cores on CI: keep torch from oversubscribing when tests run beside worker processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
