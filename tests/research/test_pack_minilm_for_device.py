"""research/lent_gpu/pack_minilm_for_device.py: the text encoder, pruned to a dataset's captions
so that it fits beside the working tree on a lent GPU."""

import pytest
import torch


@pytest.mark.slow
def test_minilm_packed_for_a_device_encodes_its_captions_unchanged(tmp_path, load_script):
    """The pruned copy a lent GPU trains with: the dataset's captions encode exactly as with the
    unpruned float16 weights; a word outside them would not, so the pruning is real."""
    import tarfile

    from backend.data.procedural import write_dataset
    from backend.data.shards import iter_dataset
    from backend.models.text import MiniLMTextEncoder

    data = tmp_path / "data"
    write_dataset(data, 6, seed=5, max_vertices=150, shard_size=6)
    archive = tmp_path / "minilm.tar.xz"
    assert load_script("pack_minilm_for_device", "research/lent_gpu").main(
        ["--data", str(data), "--out", str(archive), "--check", "10"]) == 0
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    packed = MiniLMTextEncoder(model_dir=tmp_path / "unpacked" / "all-MiniLM-L6-v2")
    full = MiniLMTextEncoder()
    caption = next(iter_dataset(data)).captions[0]
    with torch.no_grad():
        same = (packed.encode([caption]) - full.encode([caption])).abs().max().item()
        other = (packed.encode(["saxophone"]) - full.encode(["saxophone"])).abs().max().item()
    assert same < 2e-2  # float16 weights against the package's float32 ones
    assert other > 10 * max(same, 1e-3)
