"""CIFAR-10/100 and ImageNet tasks on files in the real formats, written or copied by the tests."""

import functools
import hashlib
import http.server
import pickle
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch
from PIL import Image

from suite.errors import CorruptDataError, DataNotFoundError
from suite.task_registry import get_task
from tasks.cifar import _Cifar10Files
from tasks.transforms import build_image_transform
from tests.helpers.cifar_files import write_cifar

CIFAR10_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
CIFAR10_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
SAMPLE_JPEGS = Path(sklearn.datasets.__file__).parent / "images"  # real photos shipped with scikit-learn


def normalized(pixels_chw: np.ndarray, mean, std) -> torch.Tensor:
    return (torch.from_numpy(pixels_chw).float() / 255 - mean) / std


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_pickles_give_normalized_images_and_labels(tmp_path, as_bytes):
    written = write_cifar(tmp_path, "cifar10", as_bytes=as_bytes)
    task = get_task("cifar10")
    assert task.is_available(tmp_path)
    train = task.build_dataset("train", data=tmp_path, augment=False)
    assert len(train) == 30 and train.classes[3] == "class3"
    data, labels = written["data_batch_2"]
    x, label = train[6 + 4]  # 5th image of the second batch file
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert label == labels[4]
    expected = normalized(data[4].reshape(3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)

    test = task.build_dataset("eval", data=tmp_path)
    data, labels = written["test_batch"]
    assert len(test) == 6 and [test[i][1] for i in range(6)] == labels
    torch.testing.assert_close(test[5][0], normalized(data[5].reshape(3, 32, 32), CIFAR10_MEAN, CIFAR10_STD))


def test_cifar_training_augmentation_keeps_shape_and_changes_pixels(tmp_path):
    write_cifar(tmp_path, "cifar10")
    task = get_task("cifar10")
    plain = task.build_dataset("train", data=tmp_path, augment=False)
    augmented = task.build_dataset("train", data=tmp_path)  # train split augments by default
    torch.manual_seed(0)
    views = [augmented[i][0] for i in range(len(augmented))]
    assert all(v.shape == (3, 32, 32) and v.dtype == torch.float32 for v in views)
    changed = sum(not torch.equal(views[i], plain[i][0]) for i in range(len(views)))
    assert changed >= len(views) // 2
    assert [augmented[i][1] for i in range(len(views))] == [plain[i][1] for i in range(len(views))]


def test_cifar100_reads_fine_labels(tmp_path):
    written = write_cifar(tmp_path, "cifar100", per_file=10)
    task = get_task("cifar100")
    train = task.build_dataset("train", data=tmp_path, augment=False)
    test = task.build_dataset("eval", data=tmp_path)
    assert (len(train), len(test)) == (10, 10) and len(train.classes) == 100
    assert [train[i][1] for i in range(10)] == written["train"][1]
    assert train[0][0].shape == (3, 32, 32)


def test_truncated_pickle_is_a_corrupt_data_error_naming_the_file(tmp_path):
    write_cifar(tmp_path, "cifar10", per_file=40)
    broken = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    task = get_task("cifar10")
    with pytest.raises(CorruptDataError, match=r"data_batch_3 cannot be unpickled.*truncated") as err:
        task.build_dataset("train", data=tmp_path)
    assert "extract cifar-10-python.tar.gz again" in str(err.value)
    assert len(task.build_dataset("eval", data=tmp_path)) == 40  # the test split is intact and still loads


def test_cifar_labels_out_of_range_name_the_file(tmp_path):
    write_cifar(tmp_path, "cifar10")
    path = tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(path.read_bytes())
    entry[b"labels"][2] = 10
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(CorruptDataError, match=r"test_batch has 'labels' in \[\d+, 10\], expected 0..9"):
        get_task("cifar10").build_dataset("eval", data=tmp_path)


def test_missing_cifar_names_task_layout_and_source(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        get_task("cifar10").build_dataset("train", data=tmp_path / "nowhere")
    message = str(err.value)
    for part in (
        "'cifar10'",
        "cifar-10-batches-py",
        "data_batch_1",
        "cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "--download",
    ):
        assert part in message
    assert not (tmp_path / "nowhere").exists()  # nothing created, nothing downloaded without --download


@pytest.fixture
def local_http_server(tmp_path):
    """Serves tmp_path/served over HTTP on 127.0.0.1: downloads without touching the network."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_fetches_and_extracts_the_archive(tmp_path, monkeypatch, local_http_server):
    served, base_url = local_http_server
    write_cifar(tmp_path / "source", "cifar10")
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "source" / "cifar10" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    # torchvision's real download code, pointed at the local server and the local archive's md5.
    monkeypatch.setattr(_Cifar10Files, "url", f"{base_url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(_Cifar10Files, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    task = get_task("cifar10")
    root = tmp_path / "root"
    assert not task.is_available(root)
    assert len(task.build_dataset("train", data=root, download=True)) == 30
    assert task.is_available(root)

    monkeypatch.setattr(_Cifar10Files, "url", f"{base_url}/absent.tar.gz")
    with pytest.raises(DataNotFoundError, match=r"download of http://127.0.0.1:\d+/absent.tar.gz .* failed"):
        task.build_dataset("train", data=tmp_path / "other", download=True)


# -- ImageNet ---------------------------------------------------------------------------------

WNIDS = ("n01440764", "n01443537")  # tench, goldfish
PHOTOS = ("china.jpg", "flower.jpg")


def write_imagenet(root: Path, val_folders=WNIDS) -> Path:
    base = root / "imagenet"
    for split, folders in (("train", WNIDS), ("val", val_folders)):
        for wnid, photo in zip(folders, PHOTOS, strict=False):  # val may hold fewer classes
            (base / split / wnid).mkdir(parents=True)
            shutil.copy(SAMPLE_JPEGS / photo, base / split / wnid / f"{wnid}_1.JPEG")
    return base


def test_imagenet_tree_gives_224_images_with_train_class_indices(tmp_path):
    write_imagenet(tmp_path)
    task = get_task("imagenet")
    assert task.is_available(tmp_path)
    train = task.build_dataset("train", data=tmp_path)
    val = task.build_dataset("eval", data=tmp_path)
    assert len(train) == len(val) == 2
    for dataset in (train, val):
        for index, wnid in enumerate(WNIDS):
            x, label = dataset[index]
            assert x.shape == (3, 224, 224) and x.dtype == torch.float32
            assert label == index and dataset.classes[label] == wnid
    # Eval is resize + centre crop: deterministic, and colours stay those of the photo.
    x, _ = val[1]
    assert torch.equal(x, val[1][0])
    pixels = x * IMAGENET_STD + IMAGENET_MEAN
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    photo = np.asarray(Image.open(SAMPLE_JPEGS / PHOTOS[1]).convert("RGB"), dtype=np.float32) / 255
    assert abs(pixels.mean().item() - photo.mean()) < 0.05
    assert val.class_names == list(WNIDS)  # no meta.bin: the wnids are the names


def test_imagenet_eval_transform_is_the_recipes_resize_and_centre_crop(tmp_path):
    """Eval images equal an independent pipeline built from the official recipe's values
    (ZK-Zhou/spikformer imagenet/imagenet.yml: img_size 224, crop_pct 1.0, interpolation bicubic,
    ImageNet mean/std): torchvision's Resize(int(224 / crop_pct), bicubic) of the shorter side,
    CenterCrop(224), ToTensor, Normalize, which is also what timm's transforms_imagenet_eval builds
    from those values. The photos are 640x427: a wrong size, crop or interpolation moves pixels."""
    from torchvision import transforms as T

    img_size, crop_pct = 224, 1.0
    reference = T.Compose([
        T.Resize(int(img_size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(img_size),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN.flatten().tolist(), IMAGENET_STD.flatten().tolist()),
    ])  # fmt: skip
    write_imagenet(tmp_path)
    val = get_task("imagenet").build_dataset("eval", data=tmp_path)
    for index, photo in enumerate(PHOTOS):
        x, _ = val[index]
        expected = reference(Image.open(SAMPLE_JPEGS / photo).convert("RGB"))
        assert x.shape == expected.shape == (3, img_size, img_size)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)  # v2 ToDtype vs ToTensor: the /255 rounds apart


def test_imagenet_meta_bin_gives_class_names(tmp_path):
    base = write_imagenet(tmp_path)
    torch.save(
        ({WNIDS[0]: ("tench", "Tinca tinca"), WNIDS[1]: ("goldfish", "Carassius auratus")}, []), base / "meta.bin"
    )
    val = get_task("imagenet").build_dataset("eval", data=tmp_path)
    assert val.class_names == ["tench", "goldfish"]


def test_imagenet_val_folder_unknown_to_train_is_an_error(tmp_path):
    write_imagenet(tmp_path, val_folders=(WNIDS[0], "n99999999"))
    with pytest.raises(CorruptDataError, match=r"val has class folders that train/ does not have: n99999999"):
        get_task("imagenet").build_dataset("eval", data=tmp_path)


def test_imagenet_val_lacking_a_class_keeps_train_indices(tmp_path):
    write_imagenet(tmp_path, val_folders=(WNIDS[1],))  # only goldfish in val, copied as china.jpg
    val = get_task("imagenet").build_dataset("eval", data=tmp_path)
    assert len(val) == 1 and val[0][1] == 1  # goldfish keeps index 1, not 0


def test_imagenet_flat_val_folder_says_how_to_sort_it(tmp_path):
    base = write_imagenet(tmp_path)
    shutil.rmtree(base / "val")
    (base / "val").mkdir()
    for photo in PHOTOS:
        shutil.copy(SAMPLE_JPEGS / photo, base / "val" / f"ILSVRC2012_val_{photo}.JPEG")
    with pytest.raises(DataNotFoundError, match=r"val/ holds 2 images directly instead of <wnid>/ class folders"):
        get_task("imagenet").build_dataset("eval", data=tmp_path)


def test_imagenet_undecodable_jpeg_is_named_or_skipped(tmp_path):
    base = write_imagenet(tmp_path)
    bad = base / "train" / WNIDS[0] / "broken.JPEG"
    bad.write_bytes((SAMPLE_JPEGS / PHOTOS[0]).read_bytes()[:2000])  # a truncated JPEG
    task = get_task("imagenet")
    strict = task.build_dataset("train", data=tmp_path, augment=False)
    index = [Path(p).name for p, _ in strict.samples].index("broken.JPEG")
    with pytest.raises(CorruptDataError, match=r"broken.JPEG cannot be decoded.*--skip-corrupt"):
        strict[index]
    tolerant = task.build_dataset("train", data=tmp_path, augment=False, skip_corrupt=True)
    x, label = tolerant[index]
    assert x.shape == (3, 224, 224) and label == 0


def test_missing_imagenet_says_where_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        get_task("imagenet").build_dataset("train", data=tmp_path, download=True)
    message = str(err.value)
    for part in (
        "'imagenet'",
        "train/<wnid>/*.JPEG",
        "val/<wnid>/*.JPEG",
        "https://image-net.org",
        "cannot fetch ImageNet",
    ):
        assert part in message


# -- recipe transforms ------------------------------------------------------------------------


def test_recipe_pipelines_are_timms_with_the_official_arguments():
    cifar, imagenet = get_task("cifar10").config, get_task("imagenet").config
    crop, flip, randaugment, _, normalize, erasing = build_image_transform(cifar, train=True).transforms
    assert (crop.scale, crop.ratio, crop.size) == ((1.0, 1.0), (1.0, 1.0), (32, 32)) and flip.p == 0.5
    assert [op.name for op in randaugment.ops] == ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"]
    assert randaugment.num_layers == 1 and {(op.prob, op.magnitude, op.magnitude_std) for op in randaugment.ops} == {(0.5, 9, 0.4)}
    assert torch.allclose(normalize.mean, CIFAR10_MEAN.flatten()) and (erasing.probability, erasing.mode) == (0.25, "const")
    train = build_image_transform(imagenet, train=True).transforms
    assert (train[0].scale, train[0].ratio) == ((1.0, 1.0), (0.75, 4 / 3))
    assert train[2].num_layers == 2 and len(train[2].ops) == 15  # timm's own increasing-severity list
    assert "ColorJitter" not in [type(t).__name__ for t in train]  # timm drops it once RandAugment is on
    imagenet_eval = [type(t).__name__ for t in build_image_transform(imagenet, train=False).transforms]
    assert imagenet_eval == ["Resize", "CenterCrop", "MaybeToTensor", "Normalize"]
