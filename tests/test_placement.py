"""Where the job manager starts a job (`jobs.place`): small comparisons share a GPU while their
memory estimates fit its budget, large ones get it to themselves, and nothing runs past the cap.
Pure logic, so it is held here without a GPU; benchmarks/gpu.py runs it on one."""

from agd_viz.jobs import CPU, place

GB = 1_000_000_000


def test_on_a_cpu_machine_only_the_cap_counts():
    assert place(5 * GB, [], gpus=0, budget=1, per_gpu=4, max_jobs=1) == CPU
    assert place(1, [(CPU, 1)], gpus=0, budget=1, per_gpu=4, max_jobs=1) is None


def test_small_jobs_share_a_gpu_up_to_the_per_gpu_cap():
    running = []
    for _ in range(4):
        where = place(GB, running, gpus=1, budget=8 * GB, per_gpu=4, max_jobs=16)
        assert where == 0
        running.append((where, GB))
    assert place(GB, running, gpus=1, budget=8 * GB, per_gpu=4, max_jobs=16) is None  # 4 per GPU


def test_memory_decides_before_the_count_and_a_job_alone_always_fits():
    assert place(6 * GB, [(0, 3 * GB)], gpus=1, budget=8 * GB, per_gpu=4, max_jobs=16) is None
    assert place(20 * GB, [], gpus=1, budget=8 * GB, per_gpu=4, max_jobs=16) == 0  # admitted alone
    assert place(GB, [(0, 20 * GB)], gpus=1, budget=8 * GB, per_gpu=4, max_jobs=16) is None


def test_work_spreads_over_gpus_and_cpu_jobs_do_not_take_a_gpu():
    assert place(GB, [(0, 2 * GB)], gpus=2, budget=8 * GB, per_gpu=4, max_jobs=16) == 1
    assert place(GB, [(0, 2 * GB), (1, GB)], gpus=2, budget=8 * GB, per_gpu=4, max_jobs=16) == 1
    assert place(GB, [(0, 7.5 * GB), (1, 7.5 * GB)], gpus=2, budget=8 * GB, per_gpu=4, max_jobs=16) is None
    assert place(GB, [(0, 7.5 * GB), (1, 7.5 * GB)], gpus=2, budget=8 * GB, per_gpu=4, max_jobs=16,
                 on_gpu=False) == CPU
    assert place(GB, [(0, GB), (1, GB)], gpus=2, budget=8 * GB, per_gpu=4, max_jobs=2) is None
