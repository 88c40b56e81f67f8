"""benchmarks/gpu_bench.py at tiny sizes on the CPU: the run that a lent GPU gets once has to
produce its table even when one of its rows fails."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def gpu_bench(load_script):
    return load_script("gpu_bench", "benchmarks")


def test_every_row_gets_a_cell_and_a_failing_row_does_not_end_the_run(gpu_bench, tmp_path, monkeypatch, capsys):
    # the dense row at 600 fails; the bf16 row after it must still run
    monkeypatch.setenv(gpu_bench.FAIL_ENV, "600:dense-fp32")
    variants = ["dense-fp32", "ours-bf16", "ours-bf16-compiled"]
    rc = gpu_bench.main(["--tiny", "--device", "cpu", "--sizes", "300", "600", "--evals", "1",
                         "--variants", *variants, "--out", str(tmp_path)])
    assert rc == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    by_key = {(r["size"], r["variant"]): r for r in rows}
    assert len(rows) == len(by_key) == 6

    for key in [(300, "dense-fp32"), (300, "ours-bf16"), (600, "ours-bf16")]:
        row = by_key[key]
        assert "error" not in row, row
        for column in ("encode_s", "flow_eval_s", "decode_s", "peak_gb", "official_s", "standard_s"):
            assert row[column] > 0, (key, column)
        assert row["k"] > 0 and len(row["evals_s"]) == 2  # the warm-up and --evals 1
    assert by_key[(300, "ours-bf16")]["speedup"] > 0 and by_key[(300, "ours-bf16")]["standard_speedup"] > 0
    assert "speedup" not in by_key[(600, "ours-bf16")]  # no dense row at 600 to compare with
    assert "forced failure" in by_key[(600, "dense-fp32")]["error"]
    assert "CUDA only" in by_key[(300, "ours-bf16-compiled")]["skipped"]

    table = (tmp_path / "table.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(body) == 6
    failed = next(line for line in body if "dense-fp32" in line and line.startswith("| 600 "))
    assert "error: RuntimeError: forced failure" in failed
    assert sum("skipped: torch.compile" in line for line in body) == 2
    assert table.strip() in capsys.readouterr().out


def test_sdpa_variant_computes_what_the_shipped_attention_does(gpu_bench):
    from backend.models.attention import dense_attention

    torch.manual_seed(0)
    q, k = torch.randn(1, 2, 7, 8), torch.randn(1, 2, 11, 8)
    v, bias = torch.randn(1, 2, 11, 16), torch.zeros(1, 1, 1, 11)
    bias[..., -1] = 3.0  # one key standing for e^3 padded rows, as weighted_padding makes it
    expected = dense_attention(q, k, v, 0.3, key_bias=bias)
    torch.testing.assert_close(gpu_bench.sdpa_attention(q, k, v, 0.3, key_bias=bias), expected)
    saved = gpu_bench.SDPA_BLOCK_ELEMENTS
    try:
        gpu_bench.SDPA_BLOCK_ELEMENTS = 2 * 2 * 11 * 3  # blocks of 3 query rows
        torch.testing.assert_close(gpu_bench.sdpa_attention(q, k, v, 0.3, key_bias=bias), expected)
    finally:
        gpu_bench.SDPA_BLOCK_ELEMENTS = saved


def test_evaluation_counts_are_the_backends(gpu_bench):
    from backend.config import SamplerDefaults
    from backend.quality import schedule_for
    from backend.sampling import evaluations_per_run

    official = SamplerDefaults()
    assert gpu_bench.OFFICIAL_EVALS == evaluations_per_run(official.steps, official.solver)
    standard = schedule_for("standard", official, None, None)
    assert gpu_bench.STANDARD_EVALS == evaluations_per_run(standard.steps, standard.solver)
