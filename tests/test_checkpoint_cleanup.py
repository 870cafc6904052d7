"""Abandoned render checkpoints are removed at the start of a render: folders untouched for longer than the age
limit, then the least recently touched until the total fits the size limit; never the render's own folder, a folder
in use (this process, another live process, another machine's recent render) or anything not a checkpoint folder."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from infinitetalk_lipsync.pipeline.sampler import checkpoint_cleanup as cleanup
from infinitetalk_lipsync.pipeline.sampler.resume import Checkpoints

DAY = 86400
NOW = 1_800_000_000.0


def _key(n: int) -> str:
    return (f"{n:x}" * 40)[:40]  # n < 16: 40 hex digits, n repeated


def _folder(root, n, days_old, mb=1, owner=None):
    """A checkpoint folder with one ``mb`` MB segment, all files last touched ``days_old`` days before NOW."""
    folder = root / _key(n)
    folder.mkdir(parents=True)
    (folder / "window_00000.mp4").write_bytes(b"\0" * int(mb * 1e6))
    (folder / "checkpoint.pt").write_bytes(b"x")
    if owner is not None:
        (folder / "owner.json").write_text(json.dumps(owner))
    t = NOW - days_old * DAY
    for path in list(folder.iterdir()) + [folder]:
        os.utime(path, (t, t))
    return folder


def _names(removed):
    return [int(r.key[0], 16) for r in removed]


def test_old_folders_go_recent_ones_stay(tmp_path):
    for n, days in [(1, 30), (2, 8), (3, 6.9), (4, 0.1)]:
        _folder(tmp_path, n, days)
    removed = cleanup.prune(str(tmp_path), keep=_key(15), max_age_s=7 * DAY, max_bytes=0, now=NOW)
    assert _names(removed) == [1, 2] and all(r.why == "age" for r in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == [_key(3), _key(4)]
    assert removed[0].bytes > 1e6 and removed[0].age_s == pytest.approx(30 * DAY)


def test_a_folder_counts_as_touched_when_any_file_in_it_is(tmp_path):
    folder = _folder(tmp_path, 1, 30)
    os.utime(folder / "checkpoint.pt", (NOW - 3600, NOW - 3600))  # a window finished an hour ago
    assert cleanup.prune(str(tmp_path), keep="", max_age_s=7 * DAY, max_bytes=0, now=NOW) == []


def test_over_the_size_limit_the_least_recently_touched_go_first(tmp_path):
    for n, days in [(1, 3), (2, 1), (3, 5), (4, 2)]:
        _folder(tmp_path, n, days, mb=2)
    removed = cleanup.prune(str(tmp_path), keep=_key(3), max_age_s=7 * DAY, max_bytes=4.5e6, now=NOW)
    # 8 MB: the oldest (3) is the current render's: kept; then 1 and 4 go, leaving 3 and 2 (4 MB)
    assert _names(removed) == [1, 4] and all(r.why == "size" for r in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == [_key(2), _key(3)]


def test_the_current_render_and_folders_in_use_are_never_removed(tmp_path):
    here = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _folder(tmp_path, 1, 30)  # the render about to start
        _folder(tmp_path, 2, 30, owner={"host": here, "pid": sleeper.pid})  # another live process renders it
        _folder(tmp_path, 3, 30, owner={"host": here, "pid": os.getpid()})  # ours, cancelled: abandoned
        _folder(tmp_path, 4, 0.5, owner={"host": "elsewhere", "pid": 1})  # another machine, touched recently
        _folder(tmp_path, 5, 3, owner={"host": "elsewhere", "pid": 1})  # another machine, idle for days
        active = Checkpoints(str(tmp_path), _key(6))
        _folder(tmp_path, 6, 30)
        with active.active():  # rendering in this process
            removed = cleanup.prune(str(tmp_path), keep=_key(1), max_age_s=7 * DAY, max_bytes=1, now=NOW)
        assert _names(removed) == [3, 5]
        assert [r.why for r in removed] == ["age", "size"]
    finally:
        sleeper.kill()
        sleeper.wait()
    # once that process has ended its folder is abandoned too
    assert _names(cleanup.prune(str(tmp_path), keep=_key(1), max_age_s=7 * DAY, max_bytes=0, now=NOW)) == [2, 6]


def test_only_checkpoint_folders_are_touched(tmp_path):
    (tmp_path / "my_notes").mkdir()
    (tmp_path / "a_file.mp4").write_bytes(b"x")
    old = NOW - 100 * DAY
    for p in tmp_path.iterdir():
        os.utime(p, (old, old))
    assert cleanup.prune(str(tmp_path), keep="", max_age_s=1, max_bytes=1, now=NOW) == []
    assert len(list(tmp_path.iterdir())) == 2
    assert cleanup.prune(str(tmp_path / "missing"), keep="", max_age_s=1, max_bytes=1, now=NOW) == []


def test_limits_from_the_environment_and_zero_means_none(tmp_path, monkeypatch):
    assert cleanup.limits() == (7 * DAY, 20e9)
    monkeypatch.setenv("INFINITETALK_CHECKPOINT_MAX_AGE_DAYS", "0")
    monkeypatch.setenv("INFINITETALK_CHECKPOINT_MAX_GB", "0.0000015")
    assert cleanup.limits() == (0, pytest.approx(1500))
    _folder(tmp_path, 1, 400, mb=0.001)
    _folder(tmp_path, 2, 1, mb=0.001)
    assert _names(cleanup.prune(str(tmp_path), keep="", now=NOW)) == [1]  # over 1.5 kB: the older goes, not by age
    monkeypatch.setenv("INFINITETALK_CHECKPOINT_MAX_GB", "lots")
    assert cleanup.limits()[1] == 20e9


def test_the_report_line(tmp_path):
    for n, days in [(1, 9), (2, 8), (3, 2)]:
        _folder(tmp_path, n, days, mb=30)
    now = time.time()
    for n, days in [(1, 9), (2, 8), (3, 2)]:  # prune_and_report uses the clock
        for p in [tmp_path / _key(n)] + list((tmp_path / _key(n)).iterdir()):
            os.utime(p, (now - days * DAY, now - days * DAY))
    text = cleanup.report(cleanup.prune(str(tmp_path), keep="", max_age_s=7 * DAY, max_bytes=0.02e9, now=now),
                          7 * DAY, 0.02e9)
    assert text == ("Removed 3 abandoned render checkpoint(s), 90 MB (2 untouched for over 7 days; 1 to stay under "
                    "0.02 GB): 1111111111 (9.0 d), 2222222222 (8.0 d), 3333333333 (2.0 d).")
    assert cleanup.prune_and_report(str(tmp_path), keep="") == ""


def test_a_render_removes_abandoned_checkpoints_and_says_so(tmp_path):
    """The sampler node prunes its checkpoint folder before rendering and reports it on the node text."""
    from infinitetalk_lipsync.nodes import host
    from infinitetalk_lipsync.nodes.sampler import InfiniteTalkSampler
    from test_sampler_node import _inputs
    root = host.render_folders()[1]
    old = time.time() - 10 * DAY
    stale = _folder(tmp_path / "x", 1, 0)
    os.rename(stale, os.path.join(root, stale.name))
    for base, _, files in os.walk(os.path.join(root, stale.name)):
        for p in files + [""]:
            os.utime(os.path.join(base, p), (old, old))
    fresh = Checkpoints(root, _key(2))
    fresh.commit(1, [], {})  # a cancelled render of yesterday
    text = InfiniteTalkSampler().sample(**_inputs())["ui"]["text"][0]
    assert "Removed 1 abandoned render checkpoint(s)" in text and "1111111111 (10.0 d)" in text
    assert sorted(os.listdir(root)) == [_key(2)]
