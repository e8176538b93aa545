"""make_loader: --num-workers and the device decide the DataLoader's worker processes."""

import torch
from torch.utils.data import TensorDataset

from mammography.data.loading import auto_workers, describe_loader, make_loader

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_reads_in_the_main_process_on_cpu_and_uses_workers_on_cuda(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert auto_workers(CPU) == 0
    assert auto_workers(CUDA) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun ranks on one node share its cores
    assert auto_workers(CUDA) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert auto_workers(CUDA) == 1


def test_make_loader_follows_num_workers():
    dataset = TensorDataset(torch.arange(10))
    auto_cpu = make_loader(dataset, batch_size=4, device=CPU, num_workers=-1)
    assert auto_cpu.num_workers == 0 and not auto_cpu.pin_memory
    two = make_loader(dataset, batch_size=4, device=CUDA, num_workers=2, drop_last=True)
    assert two.num_workers == 2 and two.pin_memory and two.persistent_workers
    assert len(two) == 2  # drop_last
    assert [b[0].tolist() for b in auto_cpu] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_the_log_line_says_what_was_chosen(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert describe_loader(-1, CPU) == "loader in the main process"
    assert describe_loader(-1, CUDA) == "8 loader worker processes"
    assert describe_loader(3, CPU) == "3 loader worker processes"
