"""A bounded, seeded mutation fuzz of the decoders: one bad file is one item's error, never more.

Small images are written here by Pillow, mutated (bit flips, truncations,
inserted and deleted bytes, garbage in the EXIF block) and decoded; only a
success or an :class:`ImageDecodeError` may come out. The same mutants then go
through the two batch entry points, :func:`predict_rows` and
:func:`load_utkface`, which must answer for the good items.
"""

import io
import random
import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps, features

from skface import AgeGenderCNN, make_synthetic_faces
from skface.data.imaging import decode_image, load_image
from skface.data.utkface import load_utkface
from skface.exceptions import ImageDecodeError
from skface.network.pipeline import make_pipeline, predict_rows

N_MUTANTS = 150  # per format: about a thousand cases in all, a few seconds


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate to view, so the tag is read
    exif[0x010F] = "camera"
    exif[0x011A] = 72.0
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00", 0x829A: 0.01}
    return exif


def _encode(fmt: str, **options) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if fmt == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


SEEDS = {
    "jpeg": lambda: _encode("JPEG", exif=_exif()),
    "png": lambda: _encode("PNG", exif=_exif()),
    "gif": lambda: _encode("GIF"),
    "webp": lambda: _encode("WEBP", exif=_exif()),
    "tiff": lambda: _encode("TIFF", compression="tiff_lzw"),
    # The two formats in which the fuzz found RuntimeError and NotImplementedError.
    "avif": lambda: _encode("AVIF"),
    "dds": lambda: _encode("DDS"),
}


def _exif_span(data: bytes) -> tuple[int, int] | None:
    """Start and end of the TIFF structure inside a JPEG's APP1 EXIF segment."""
    start = data.find(b"Exif\x00\x00")
    if start < 4 or data[:2] != b"\xff\xd8":
        return None
    length = int.from_bytes(data[start - 2:start], "big")
    return start + 6 + 8, start - 2 + length  # past the TIFF header, to the segment's end


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.randrange(5)
    span = _exif_span(data)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del out[rng.randrange(1, len(out)):]
    elif kind == 2:  # inserted bytes
        i = rng.randrange(len(out))
        out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 3:  # deleted bytes
        i = rng.randrange(len(out))
        del out[i:i + rng.randint(1, 16)]
    elif span is not None:  # garbage in the EXIF block, pixels intact
        for _ in range(rng.randint(1, 10)):
            out[rng.randrange(*span)] = rng.randrange(256)
    else:  # garbage in the header
        for _ in range(rng.randint(1, 6)):
            out[rng.randrange(min(len(out), 200))] = rng.randrange(256)
    return bytes(out)


def _seed(fmt: str) -> bytes:
    if fmt == "avif" and not features.check("avif"):
        pytest.skip("this Pillow cannot write AVIF")
    return SEEDS[fmt]()


def _mutants(fmt: str, n: int = N_MUTANTS, seed: int = 0) -> list[bytes]:
    data = _seed(fmt)
    rng = random.Random(f"{fmt}-{seed}")
    return [_mutate(data, rng) for _ in range(n)]


@pytest.fixture(autouse=True)
def _quiet_pillow():
    # Some mutants make Pillow warn (truncated EXIF, odd chunk sizes); the
    # warnings are not what is tested here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("fmt", list(SEEDS))
def test_a_mutated_file_decodes_or_raises_image_decode_error(fmt, tmp_path):
    for i, data in enumerate(_mutants(fmt)):
        sources = [data] if i % 10 else [data, tmp_path / f"{i}.{fmt}"]
        if len(sources) == 2:
            sources[1].write_bytes(data)
        for source in sources:
            for decode in (lambda s: decode_image(s, 16, "grayscale"), lambda s: load_image(s, "rgb")):
                try:
                    decode(source)
                except ImageDecodeError as exc:
                    assert str(exc), f"mutant {i} of {fmt}: an ImageDecodeError without a reason"
                # Anything else propagates and fails the test, naming the exception type.


def test_a_malformed_exif_block_keeps_the_pixels():
    """Pillow's exif_transpose rewrites the EXIF block and fails on garbage in
    it (struct.error, TypeError, AttributeError); the pixels are still read."""
    data = _seed("jpeg")
    rng = random.Random("exif")
    span = _exif_span(data)
    rescued = 0
    for _ in range(400):
        mutant = bytearray(data)
        for _ in range(rng.randint(1, 10)):
            mutant[rng.randrange(*span)] = rng.randrange(256)
        try:
            ImageOps.exif_transpose(Image.open(io.BytesIO(bytes(mutant))))
        except (OSError, SyntaxError, ValueError, EOFError):
            continue
        except Exception:  # noqa: BLE001 - exactly the failures that must not reach skface's callers
            image = load_image(bytes(mutant), "rgb")
            assert image.size in ((20, 24), (24, 20))
            rescued += 1
    assert rescued > 0, "no mutant broke Pillow's exif_transpose; the test no longer tests anything"


def test_a_corrupt_image_has_a_reason_and_what_to_do():
    data = _seed("dds")
    bad = next(m for m in _mutants("dds", 200) if _raises_outside_pillow_docs(m))
    with pytest.raises(ImageDecodeError, match=r"corrupt or truncated.*NotImplementedError.*convert it to PNG"):
        decode_image(bad)
    assert decode_image(data).shape == (64, 64, 1)


def _raises_outside_pillow_docs(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).load()
    except NotImplementedError:
        return True
    except Exception:  # noqa: BLE001 - looking for one type only
        return False
    return False


@pytest.fixture(scope="module")
def tiny_pipeline():
    X, y = make_synthetic_faces(40, image_size=16, random_state=0)
    estimator = AgeGenderCNN(filters=(4,), dense_units=8, epochs=1, verbose=0, random_state=0).fit(X, y)
    return make_pipeline(estimator, image_size=16, color="grayscale", faces=False)


def _failing_mutants() -> list[bytes]:
    """Mutants of each format that decode_image refuses."""
    bad = []
    for fmt in SEEDS:
        if fmt == "avif" and not features.check("avif"):
            continue
        for data in _mutants(fmt, 30, seed=1):
            try:
                decode_image(data, 16)
            except ImageDecodeError:
                bad.append(data)
    return bad


def test_predict_rows_answers_the_good_rows_of_a_batch_with_mutants(tiny_pipeline, tmp_path):
    good = [_seed(fmt) for fmt in ("jpeg", "png", "gif", "webp", "tiff")]
    bad = _failing_mutants()
    assert len(bad) > 20
    items = [item for pair in zip(bad, good * len(bad)) for item in pair]
    path = tmp_path / "bad.jpg"
    path.write_bytes(bad[0])
    items += [str(path), str(tmp_path / "missing.jpg")]
    rows = predict_rows(tiny_pipeline, items, batch_size=16)
    assert len(rows) == len(items)
    for item, row in zip(items, rows):
        if isinstance(item, bytes) and item in good:
            assert row["error"] == "" and row["age"] is not None
        else:
            assert row["error"] and row["age"] is None and row["faces"] == []


def test_load_utkface_skips_a_mutant_and_loads_the_rest(tmp_path):
    good = _seed("jpeg")
    names = [f"{age}_{age % 2}_0_2017010117452512{age}.jpg.chip.jpg" for age in (20, 31, 42)]
    for name in names:
        (tmp_path / name).write_bytes(good)
    bad_name = "50_1_2_20170101174525125.jpg.chip.jpg"
    (tmp_path / bad_name).write_bytes(_failing_mutants()[0])
    faces = load_utkface(tmp_path, image_size=16, cache=False, verbose=False)
    assert sorted(faces.filenames) == sorted(names)
    assert [name for name, _ in faces.skipped] == [bad_name]
    assert faces.skipped[0][1].startswith("unreadable image: ")
