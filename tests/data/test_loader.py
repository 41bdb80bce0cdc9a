"""grain pipelines of step-indexed batches: equal to ``batch_fn``, per-process slices, worker processes,
checkpointable iterator state, TFDS (``tfds.testing.mock_data``) and the batch transforms."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest

from jaxdiff.data import loader, pipeline, transforms

AUGMENT = (transforms.RandomFlip(), transforms.ScaleImage())


def _images(n: int = 40, seed: int = 0) -> pipeline.ArraySource:
    rng = np.random.default_rng(seed)
    return pipeline.ArraySource(image=rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8), label=np.arange(n))


def _sampler(n: int = 40, batch: int = 8, index: int = 0, count: int = 1) -> pipeline.EpochSampler:
    return pipeline.EpochSampler(n, batch, seed=3, process_index=index, process_count=count)


def _assert_batches_equal(got: list, want: list):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_step_dataset_equals_batch_fn_across_epochs():
    source, sampler = _images(), _sampler()
    dataset, reference = loader.step_dataset(source, sampler, 12), pipeline.batch_fn(source, sampler)
    assert len(dataset) == 12 and sampler.steps_per_epoch == 5
    _assert_batches_equal([dataset[k] for k in range(12)], [reference(k) for k in range(12)])
    it = loader.iterate(dataset, start=7)
    _assert_batches_equal(list(it), [reference(k) for k in range(7, 12)])
    it.close()


@pytest.mark.parametrize("name", ["digits", "swiss_roll", "arrays"])
def test_shipped_sources_through_step_dataset(name):
    if name == "digits":
        from jaxdiff.data.digits import load_digits

        x, y = load_digits("train")
        source = pipeline.ArraySource(image=x, label=y)
    elif name == "swiss_roll":
        from jaxdiff.data.toy import load_toy

        source = pipeline.ArraySource(image=load_toy(name, 100))
    else:  # several named arrays of mixed dtypes, as the QM9 graphs (atoms, bonds) and flow pairs (+ masks) are
        rng = np.random.default_rng(0)
        source = pipeline.ArraySource(atoms=rng.integers(5, size=(50, 9)), bonds=rng.integers(4, size=(50, 9, 9)),
                                      valid=rng.random((50, 9)) < 0.5)
    sampler = _sampler(len(source), 16)
    dataset, reference = loader.step_dataset(source, sampler, 8), pipeline.batch_fn(source, sampler)
    _assert_batches_equal([dataset[k] for k in range(8)], [reference(k) for k in range(8)])


def test_two_processes_partition_the_global_batch():
    source = _images()
    whole = loader.step_dataset(source, _sampler(), 12, AUGMENT)
    parts = [loader.step_dataset(source, _sampler(index=i, count=2), 12, AUGMENT) for i in range(2)]
    for step in (0, 6, 11):
        local = [p[step] for p in parts]
        assert local[0]["image"].shape == (4, 4, 5, 3)
        np.testing.assert_array_equal(np.concatenate([b["label"] for b in local]), whole[step]["label"])
        np.testing.assert_array_equal(np.concatenate([b["image"] for b in local]), whole[step]["image"])


def test_workers_give_the_batches_of_no_workers_and_their_state_resumes_mid_epoch():
    dataset = loader.step_dataset(_images(), _sampler(), 12, AUGMENT)
    it = loader.iterate(dataset, start=2, worker_count=2)
    first = [next(it) for _ in range(4)]  # steps 2..5: the second epoch starts at step 5
    state = json.loads(json.dumps(it.get_state()))
    rest = [next(it) for _ in range(4)]
    it.close()
    _assert_batches_equal(first + rest, [dataset[k] for k in range(2, 10)])
    resumed = loader.iterate(dataset, start=2, worker_count=2)
    resumed.set_state(state)
    _assert_batches_equal([next(resumed) for _ in range(4)], rest)
    resumed.close()
    # Finalise the workers' semaphores now: a later collection inside TFDS's lazy-import hook fails to
    # run their finalizers (an unraisable exception).
    gc.collect()


def test_in_process_iterator_state_resumes():
    dataset = loader.step_dataset(_images(), _sampler(), 12, AUGMENT)
    it = loader.iterate(dataset)
    for _ in range(3):
        next(it)
    state = it.get_state()
    rest = list(it)
    resumed = loader.iterate(dataset)
    resumed.set_state(state)
    _assert_batches_equal(list(resumed), rest)
    it.close()
    resumed.close()


def test_iterator_state_through_an_orbax_checkpoint(tmp_path):
    import grain
    import orbax.checkpoint as ocp

    dataset = loader.step_dataset(_images(), _sampler(), 12, AUGMENT)
    it = loader.iterate(dataset)
    for _ in range(4):
        next(it)
    with ocp.CheckpointManager(tmp_path) as manager:
        manager.save(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
        resumed = loader.iterate(dataset)
        manager.restore(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    _assert_batches_equal(list(resumed), [dataset[k] for k in range(4, 12)])
    it.close()
    resumed.close()


def test_tfds_through_the_pipeline():
    tfds = pytest.importorskip("tensorflow_datasets")
    from jaxdiff.data.tfds import TFDSImageSource, TFDSSource

    with tfds.testing.mock_data(num_examples=24):
        raw, scaled = TFDSSource("cifar10", "train"), TFDSImageSource("cifar10", "train")
        batch = raw.get(np.arange(4))
        assert batch["image"].dtype == np.uint8 and batch["image"].shape == (4, 32, 32, 3)
        assert batch["label"].dtype == np.int32
        np.testing.assert_array_equal(scaled.get(np.arange(4))["image"], transforms.scale_image(batch["image"]))
        sampler = _sampler(24, 8)
        plain = loader.step_dataset(raw, sampler, 6, [transforms.ScaleImage()])
        _assert_batches_equal([plain[k] for k in range(6)], [pipeline.batch_fn(scaled, sampler)(k) for k in range(6)])
        it = loader.iterate(loader.step_dataset(raw, sampler, 6, AUGMENT))
        images = np.concatenate([b["image"] for b in it])
        it.close()
    assert images.shape == (48, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0


def test_tfds_source_reads_a_prepared_data_set_as_written(tmp_path):
    """A data set prepared by TFDS itself (``download_and_prepare``, ArrayRecord of PNGs), not a mock."""
    pytest.importorskip("tensorflow_datasets")
    from experiments.bench.input_pipeline import cifar_like, write_tfds
    from jaxdiff.data.tfds import TFDSSource

    images, labels = cifar_like(12)
    source = TFDSSource(write_tfds(images, labels, str(tmp_path)), data_dir=str(tmp_path))
    assert len(source) == 12
    batch = source.get(np.arange(12))  # TFDS stores examples in an order of its own (hashed keys)
    order = [next(j for j in range(12) if np.array_equal(images[j], x)) for x in batch["image"]]
    assert sorted(order) == list(range(12))
    np.testing.assert_array_equal(batch["label"], labels[order])


def test_example_keys_depend_on_seed_epoch_and_index_only():
    idx = np.array([5, 1, 7])
    keys = transforms.example_keys(0, 2, idx)
    np.testing.assert_array_equal(transforms.example_keys(0, 2, idx[1:]), keys[1:])
    assert len(set(keys.tolist())) == 3
    for other in (transforms.example_keys(1, 2, idx), transforms.example_keys(0, 3, idx),
                  transforms.split_keys(keys, 0)):
        assert not np.any(other == keys)
    u = transforms.uniform(transforms.example_keys(0, 0, np.arange(10_000)))
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01


def test_flip_and_scale():
    x = np.random.default_rng(0).integers(0, 256, (64, 3, 4, 2), dtype=np.uint8)
    batch = {"image": x, "label": np.arange(64)}
    keys = transforms.example_keys(0, 0, np.arange(64))
    out = transforms.RandomFlip()(batch, keys)
    flipped = np.array([np.array_equal(o, a[:, ::-1]) for o, a in zip(out["image"], x)])
    kept = np.array([np.array_equal(o, a) for o, a in zip(out["image"], x)])
    assert np.all(flipped | kept) and 16 < flipped.sum() < 48
    np.testing.assert_array_equal(flipped, transforms.uniform(keys) < 0.5)
    assert out["label"] is batch["label"] and np.array_equal(batch["image"], x)  # the input is left alone
    scaled = transforms.ScaleImage()({"image": np.array([0, 255], np.uint8)}, keys[:2])["image"]
    assert scaled.dtype == np.float32 and scaled.tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        transforms.RandomFlip()({"image": np.zeros((2, 3), np.uint8)}, keys[:2])


def test_bad_loader_arguments():
    source, sampler = _images(), _sampler()
    with pytest.raises(ValueError, match="num_steps"):
        loader.step_dataset(source, sampler, -1)
    with pytest.raises(IndexError, match="outside"):
        loader.StepBatches(source, sampler, 3)[3]
    with pytest.raises(ValueError, match="worker_count"):
        loader.iterate(loader.step_dataset(source, sampler, 3), worker_count=-1)
