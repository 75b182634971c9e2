"""The user's own images: an image folder DIR/train/<class>/<images> (and val/, test/ alike),
listed, checked and decoded.

The layout is checked by listing alone (folder_classes); every file is decoded before any work,
so a file that does not decode, or is cut short (a truncated PNG or JPEG, which the decoders
would fill in without a word), is one line naming it, or, with ``data.skip_bad_files``, is left
out with a note that counts and names them. Images of another size than the input shape are
resized, with a note of what was resized to what.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from project.errors import DataError

SPLIT_FOLDERS = ("train", "val", "test")


def _folder_error(root: Path, why: str, allowed: str = "a folder holding train/<class>/<images> (and val/, test/ "
                  "alike where wanted)") -> DataError:
    return DataError("data.data_dir", root, allowed, why)


def _class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


# What operating systems leave in folders: never an image, never an error.
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}


def _image_files(folder: Path) -> list[Path]:
    """The files of a folder and its sub-folders, sorted; hidden and system files left aside; a link
    to a missing file is kept (and named when it is read)."""
    return sorted(p for p in folder.rglob("*") if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")
                  and p.name.lower() not in _SYSTEM_FILES)


def folder_classes(root: Path) -> tuple[str, ...]:
    """The class names, the sorted sub-folders of DIR/train, with the layout checked by listing alone:
    train/ exists, holds two classes or more, none empty; val/ and test/ hold no class train/ lacks."""
    root = Path(root)
    train = root / "train"
    try:
        if not train.is_dir():
            raise _folder_error(root, "has no train/ folder" if root.is_dir() else "is no folder")
        classes = _class_folders(train)
        if len(classes) < 2:
            raise _folder_error(root, f"has {len(classes)} class folder{'s' if len(classes) != 1 else ''} in train/ "
                                f"({', '.join(classes) or 'none'})", "at least two class folders in train/")
        for name in classes:
            if not _image_files(train / name):
                raise _folder_error(root, f"has an empty class folder train/{name}/", "image files in every class folder")
        for split in SPLIT_FOLDERS[1:]:
            if (root / split).is_dir():
                unknown = sorted(set(_class_folders(root / split)) - set(classes))
                if unknown:
                    raise _folder_error(root, f"has classes in {split}/ that train/ lacks: {', '.join(unknown)}",
                                        f"{split}/ class folders named as in train/ ({', '.join(classes)})")
    except PermissionError as err:
        raise _folder_error(root, f"cannot be read ({err.strerror}: {err.filename})", "a folder this user can read") \
            from None
    return tuple(classes)


def _truncated(path: Path) -> str | None:
    """Why a PNG or JPEG file is cut short, read from its first and last bytes alone: libpng and
    libjpeg decode such a file without a word, its missing rows filled in."""
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, path.stat().st_size - 12))
        tail = f.read()
    if head.startswith(b"\x89PNG") and not tail.endswith(b"IEND\xaeB`\x82"):
        return "is truncated (no IEND chunk at its end)"
    if head.startswith(b"\xff\xd8") and not tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "is truncated (no end-of-image marker)"
    return None


_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALLOWED_FILES = "image files Pillow reads (PNG, JPEG, GIF, WEBP, BMP, TIFF ...), whole"


def _pixels(image) -> np.ndarray:
    """(H, W, C) uint8 of a decoded Pillow image: gray stays gray (16-bit scaled to 8), anything
    else becomes RGB."""
    if image.mode.startswith("I") or image.mode == "F":  # 16- or 32-bit gray: scaled to 8 bits, not clipped
        deep = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" else max(1.0, float(deep.max()))
        return np.clip(deep / top * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., None]
    if image.mode in _GRAY_MODES:
        return np.array(image.convert("L"))[..., None]
    return np.array(image.convert("RGB"))


def _decode(path: Path, channels: int | None):
    """One image as a (C, H, W) uint8 tensor, as gray or RGB; a file that does not decode, or is cut
    short, is named. Pillow decodes: libpng inside torchvision.io ended the process with SIGSEGV on
    a PNG whose compressed data was damaged, or whose header promised more rows than it held."""
    from PIL import Image

    try:
        cut = "is a link to a missing file" if path.is_symlink() and not path.exists() else _truncated(path)
        if not cut:
            with Image.open(path) as image:
                image.load()
                pixels = _pixels(image)
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError) as err:
        cut = f"does not decode ({type(err).__name__}: {' '.join(str(err).split())[:100]})"
    if cut:
        raise DataError("data.data_dir", path.parents[2], ALLOWED_FILES,
                        f"holds {path.relative_to(path.parents[2])}, which {cut}")
    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    if channels == 1 and image.shape[0] == 3:
        image = torch.from_numpy(np.asarray(Image.fromarray(pixels).convert("L"))[None].copy())
    elif channels == 3 and image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.contiguous()


def folder_shape(settings) -> tuple[int, int, int]:
    """(C, H, W): data.channels and data.image_size where given, else the first training image's
    (only that one is decoded)."""
    root = Path(settings["data_dir"])
    classes = folder_classes(root)
    first = _decode(_image_files(root / "train" / classes[0])[0], settings.get("channels"))
    channels = settings.get("channels") or first.shape[0]
    height, width = settings.get("image_size") or first.shape[1:]
    return int(channels), int(height), int(width)


def folder_files(settings) -> dict[str, tuple[list[str], list[int]]]:
    """Each split folder's image files and their labels, by listing alone (nothing is decoded)."""
    root = Path(settings["data_dir"])
    classes = folder_classes(root)
    files = {}
    for split in SPLIT_FOLDERS:
        paths, labels = [], []
        for label, name in enumerate(classes):
            found = _image_files(root / split / name) if (root / split / name).is_dir() else []
            paths += [str(p) for p in found]
            labels += [label] * len(found)
        if paths:
            files[split] = (paths, labels)
    return files


def read_image_file(path: str, shape: tuple[int, int, int], sizes: Counter | None = None,
                    resize: bool = True) -> torch.Tensor:
    """One image file as a (C, H, W) uint8 tensor of this shape: gray or RGB, resized (its own
    size counted in ``sizes`` where given; ``resize=False``: as decoded, to check it alone)."""
    from torchvision.transforms.v2.functional import resize as resized

    image = _decode(Path(path), shape[0])
    if sizes is not None:
        sizes[tuple(image.shape[1:])] += 1
    if not resize or tuple(image.shape[1:]) == shape[1:]:
        return image
    return resized(image, list(shape[1:]), antialias=True)


def checked_files(files: dict[str, tuple[list[str], list[int]]], channels: int | None, skip: bool,
                  shape: tuple[int, int, int] | None = None) -> tuple[dict, list[tuple[str, str]], dict]:
    """Every file decoded once: the first that does not decode stops with its one line, or, with
    ``skip``, each is left out. Returns the files kept, those left out (name, why) and, where
    ``shape`` is given, the decoded images of each split as a uint8 tensor (else None)."""
    kept, skipped, images = {}, [], {}
    sizes = Counter()
    for split, (paths, labels) in files.items():
        good_paths, good_labels, decoded = [], [], []
        for path, label in zip(paths, labels):
            try:
                image = read_image_file(path, shape or (channels, 0, 0), sizes if shape else None, resize=shape is not None)
            except DataError as err:
                if not skip:
                    raise
                skipped.append((str(Path(path).relative_to(Path(path).parents[2])), err.why.split(", which ", 1)[-1]))
                continue
            good_paths.append(path)
            good_labels.append(label)
            if shape:
                decoded.append(image)
        kept[split] = (good_paths, good_labels)
        if shape and decoded:
            images[split] = torch.stack(decoded)
    return kept, skipped, {"images": images, "sizes": sizes}


def skipped_note(data_dir, skipped: list, total: int) -> str:
    if not skipped:
        return ""
    listed = ", ".join(f"{name} ({why})" for name, why in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return (f"note: data.skip_bad_files: {len(skipped)} of {total} files of {data_dir} left out, which do not decode "
            f"or are cut short: {listed}")


def check_classes_left(root, files: dict) -> None:
    """Skipping may not empty a class of its training images."""
    classes = folder_classes(root)
    left = Counter(files["train"][1])
    empty = [classes[i] for i in range(len(classes)) if left[i] == 0]
    if empty:
        raise _folder_error(Path(root), f"has no decodable image left in train/{empty[0]}/ once bad files are "
                            "skipped", "a class folder with at least one image that decodes")


def read_folder(settings) -> tuple[dict, str]:
    """Every image decoded, as gray or RGB, resized to the input shape: a uint8 tensor per split;
    with the notes of what was resized and what was left out."""
    shape, listed = folder_shape(settings), folder_files(settings)
    files, skipped, read = checked_files(listed, shape[0], bool(settings.get("skip_bad_files")), shape)
    if skipped:
        check_classes_left(settings["data_dir"], files)
    splits = {split: (read["images"][split], torch.tensor(labels, dtype=torch.long))
              for split, (paths, labels) in files.items() if paths}
    sizes = read["sizes"]
    other = {size: n for size, n in sizes.items() if size != shape[1:]}
    notes = [skipped_note(settings["data_dir"], skipped, sum(len(p) for p, _ in listed.values()))]
    if other:
        resized = ", ".join(f"{n} of {h}x{w}" for (h, w), n in sorted(other.items(), key=lambda item: -item[1])[:5])
        why = "data.image_size" if settings.get("image_size") else "the first training image's size; data.image_size sets another"
        notes.append(f"note: data.data_dir={settings['data_dir']}: {sum(other.values())} of {sum(sizes.values())} images "
                     f"are resized to {shape[1]}x{shape[2]} ({why}): {resized}")
    return splits, "\n".join(n for n in notes if n)
