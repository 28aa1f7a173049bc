"""The benchmark scripts run end to end with tiny settings and report every figure."""

import scripts


def load(name):
    return scripts.load("benchmarks", name)


def test_train_throughput_reports_every_figure(capsys):
    (result,) = load("train_throughput").main(["--model", "sequential", "--steps", "3", "--repeats", "1"])
    assert set(result) >= {"backend", "devices", "model", "batch_size", "dtype", "compile_s", "images_per_s",
                           "s_per_60k_epoch", "peak_rss_mb", "train_gflops_per_s", "matmul_gflops_per_s",
                           "pct_of_matmul_peak"}
    assert result["images_per_s"] > 0 and result["matmul_gflops_per_s"] > 0
    assert '"model": "sequential"' in capsys.readouterr().out


def test_compare_runs_cnnjax_and_skips_missing_peers(capsys, monkeypatch):
    compare = load("compare")
    monkeypatch.setattr(compare.importlib.util, "find_spec", lambda name: None)
    rows = compare.main(["--steps", "3", "--repeats", "1", "--rounds", "1"])
    assert len(rows) == 1 and rows[0]["framework"].startswith("cnnjax")
    captured = capsys.readouterr()
    assert "skipping pytorch" in captured.err and "skipping keras" in captured.err
    assert "cnnjax/peer" in captured.out


def test_compare_races_the_sentence_cnn(capsys, monkeypatch):
    compare = load("compare")
    monkeypatch.setattr(compare.importlib.util, "find_spec", lambda name: None)  # cnnjax alone here
    monkeypatch.setitem(compare.TEXT, "vocab", 50)
    monkeypatch.setitem(compare.TEXT, "embed_dim", 8)
    monkeypatch.setitem(compare.TEXT, "length", 12)
    monkeypatch.setitem(compare.TEXT, "features", 4)
    assert compare.main(["--text", "--no-training", "--steps", "2", "--repeats", "1", "--rounds", "1"]) == []
    out = capsys.readouterr().out
    assert "sentence CNN (Kim 2014: 8-d words" in out and '"table": "text", "cnnjax":' in out


def test_gpu_benchmark_counts_kernels_and_tabulates_its_rows():
    """What benchmarks/gpu.py does on any machine (its PyTorch rows need CUDA): the kernels
    of one compiled training step, read from the optimised HLO, and the table of rows."""
    gpu = load("gpu")
    counted = gpu.kernels_per_step(8, "float32")
    assert counted["kernels"] == sum(counted["by_kind"].values()) > 10
    assert not {"parameter", "tuple", "get-tuple-element", "constant"} & set(counted["by_kind"])
    row = {"framework": "cnnjax", "dtype": "float32", "batch_size": 64, "images_per_s": 263148,
           "s_per_60k_epoch": 0.23, "ms_per_step": 0.243, "compile_s": 1.94, "peak_device_mb": 482}
    assert gpu.table([row, counted]).splitlines()[-1] == "| cnnjax | float32 | 64 | 263,148 | 0.23 | 0.243 | 1.94 | 482 |"


def test_compare_times_the_predictor_with_dispatch_inline_in_a_process_of_its_own():
    rates = load("compare").inference_predictor_sync((1, 2))
    assert set(rates) == {1, 2} and all(r > 0 for r in rates.values())
