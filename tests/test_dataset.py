"""shelfsense.tools.dataset: the one reader of grocery-store datasets and folders of class folders."""

from __future__ import annotations

from pathlib import Path

from shelfsense.tools.dataset import labelled_images, read_classes, read_split

HEADER = "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str)\n"


def test_grocery_layout(tmp_path: Path) -> None:
    (tmp_path / "classes.csv").write_text(HEADER + "Golden-Delicious,0,Apple,0,/x.jpg\nOat-Milk,1,Milk,3,/y.jpg\n")
    (tmp_path / "val.txt").write_text("val/Apple/Golden-Delicious/a.jpg, 0, 0\n\nval/Milk/Oat-Milk/b.jpg, 1, 3\n")
    classes = read_classes(tmp_path / "classes.csv")
    assert [(c.fine_id, c.name, c.coarse_id, c.coarse_name) for c in classes.values()] == [
        (0, "Golden-Delicious", 0, "Apple"),
        (1, "Oat-Milk", 3, "Milk"),
    ]
    images = read_split(tmp_path, "val")
    assert [(i.path, i.fine_id, i.coarse_id) for i in images] == [
        (tmp_path / "val/Apple/Golden-Delicious/a.jpg", 0, 0),
        (tmp_path / "val/Milk/Oat-Milk/b.jpg", 1, 3),
    ]


def test_class_folders_in_path_order(tmp_path: Path) -> None:
    for rel in ("b/2.png", "a/1.JPG", "a/notes.txt", "b/sub/3.jpeg", "top.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = [(p.relative_to(tmp_path).as_posix(), label) for p, label in labelled_images(tmp_path)]
    assert found == [("a/1.JPG", "a"), ("b/2.png", "b"), ("b/sub/3.jpeg", "sub"), ("top.jpg", tmp_path.name)]
    assert [p.name for p, _ in labelled_images(tmp_path, frozenset({".png"}))] == ["2.png"]
