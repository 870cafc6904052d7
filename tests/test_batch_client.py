"""The batch client's pieces without a ComfyUI: jobs files, patching by title, /object_info checks, the manifest,
the websocket framing, and the scheduler over fake servers (fan-out, a server dying mid-job, invalid jobs never
queued, re-runs skipping finished jobs). Real servers: tests/integration/test_batch_client_comfyui.py."""
import copy
import io
import json
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from client import batch, export_api  # noqa: E402
from client.jobs import Job, JobsError, cross_folders, parse_size, read_jobs  # noqa: E402
from client.manifest import Manifest, fingerprint  # noqa: E402
from client.patch import PatchError, apply  # noqa: E402
from client.progress import Progress  # noqa: E402
from client.scheduler import Batch  # noqa: E402
from client.server import JobFailed, ServerDown, rejection_text  # noqa: E402
from client.validate import problems  # noqa: E402
from client.ws import WebSocket, WebSocketClosed  # noqa: E402

API = ROOT / "example_workflows" / "api"


def _api(name):
    (path,) = API.glob(f"*{name}*.json")  # file names follow the UI workflows' names
    return json.loads(path.read_text())


def _files(tmp_path, *names):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    return tmp_path


# ---- jobs
def test_csv_jobs_with_aliases_defaults_overrides_and_relative_paths(tmp_path):
    _files(tmp_path, "v/a.mp4", "s/x.wav", "f.png")
    (tmp_path / "jobs.csv").write_text(
        "video,audio,face_image,prompt,seed,size,InfiniteTalk Sampler.steps\n"
        "v/a.mp4,s/x.wav,f.png,hello,7,832x480,8\n"
        "v/a.mp4,s/x.wav,,,,,\n")
    first, second = read_jobs(tmp_path / "jobs.csv", {"prompt": "default", "seed": 3, "size": None})
    assert first.id == "a__x" and second.id == "a__x-2"
    assert first.source == (tmp_path / "v/a.mp4").resolve() and first.face == (tmp_path / "f.png").resolve()
    assert (first.prompt, first.seed, first.size) == ("hello", 7, "832x480")
    assert first.overrides == {("InfiniteTalk Sampler", "steps"): 8}
    assert (second.prompt, second.seed, second.face, second.overrides) == ("default", 3, None, {})


def test_jsonl_jobs_and_errors_name_the_line(tmp_path):
    (tmp_path / "jobs.jsonl").write_text('{"id": "one", "source": "a.mp4", "audio": "b.wav", "seed": 5}\n\n'
                                         '{"source": "a.mp4"}\n')
    with pytest.raises(JobsError, match=r"jobs.jsonl line 3: no audio"):
        read_jobs(tmp_path / "jobs.jsonl")
    (tmp_path / "jobs.jsonl").write_text('{"id": "one", "source": "a.mp4", "audio": "b.wav", "seed": "x"}\n')
    with pytest.raises(JobsError, match="line 1: seed 'x' is not an integer"):
        read_jobs(tmp_path / "jobs.jsonl")
    (tmp_path / "jobs.jsonl").write_text('{"source": "a.mp4", "audio": "b.wav", "size": "big"}\n')
    with pytest.raises(JobsError, match="WIDTHxHEIGHT"):
        read_jobs(tmp_path / "jobs.jsonl")
    (tmp_path / "jobs.jsonl").write_text('{"source": "a.mp4", "audio": "b.wav", "colour": 1}\n')
    with pytest.raises(JobsError, match="unknown column 'colour'"):
        read_jobs(tmp_path / "jobs.jsonl")


def test_two_folders_crossed(tmp_path):
    _files(tmp_path, "vid/b.mp4", "vid/a.png", "vid/notes.txt", "aud/1.wav", "aud/2.mp3")
    jobs = cross_folders(tmp_path / "vid", tmp_path / "aud", {"seed": 1})
    assert [j.id for j in jobs] == ["a__1", "a__2", "b__1", "b__2"] and all(j.seed == 1 for j in jobs)
    with pytest.raises(JobsError, match="no audio files"):
        cross_folders(tmp_path / "vid", tmp_path / "vid")


def test_sizes():
    assert parse_size("832x480") == {"resolution": "custom width/height", "width": 832, "height": 480}
    assert parse_size("720p") == {"resolution": "720p bucket"}


# ---- patching
def _job(tmp_path, **kw):
    _files(tmp_path, "clip.mp4", "speech.wav", "face.png", "portrait.png")
    values = dict(id="j1", source=tmp_path / "clip.mp4", audio=tmp_path / "speech.wav")
    return Job(**{**values, **kw})


def test_patch_sets_every_role_by_title(tmp_path):
    workflow = _api("v2v_dubbing")
    prompt, media = apply(workflow, _job(tmp_path, prompt="hi", seed=9, size="640x368",
                                         overrides={("InfiniteTalk Sampler", "steps"): 6}), "batch")
    by_title = {n["_meta"]["title"]: n["inputs"] for n in prompt.values()}
    assert by_title["Source video"]["file"] == "clip.mp4" and by_title["Audio"]["audio"] == "speech.wav"
    assert by_title["Prompt"]["text"] == "hi"
    sampler = by_title["InfiniteTalk Sampler"]
    assert (sampler["seed"], sampler["resolution"], sampler["width"], sampler["height"], sampler["steps"]) == \
        (9, "custom width/height", 640, 368, 6)
    assert by_title["Save Video"]["filename_prefix"] == "batch/j1"
    assert sorted(k for _, k, _ in media) == ["audio", "file"]
    assert workflow == _api("v2v_dubbing"), "the loaded workflow is not modified"


def test_patch_finds_untitled_nodes_by_graph_and_adds_a_face_image(tmp_path):
    workflow = _api("i2v")
    for node in workflow.values():
        node["_meta"]["title"] = node["class_type"]  # as exported from an editor without our titles
    prompt, media = apply(workflow, _job(tmp_path, source=tmp_path / "portrait.png", face=tmp_path / "face.png",
                                         prompt="p"), "out")
    sampler = next(n for n in prompt.values() if n["class_type"] == "InfiniteTalkSampler")
    face_id = sampler["inputs"]["face_image"][0]
    assert prompt[face_id] == {"inputs": {"image": "face.png"}, "class_type": "LoadImage",
                               "_meta": {"title": "Face image"}}
    assert [p.name for _, _, p in media] == ["portrait.png", "speech.wav", "face.png"]
    assert any(n["class_type"] == "CLIPTextEncode" and n["inputs"]["text"] == "p" for n in prompt.values())


def test_patch_face_only_size_sets_the_crop_too(tmp_path):
    prompt, _ = apply(_api("face_only_dubbing"), _job(tmp_path, size="256x320"), "b")
    crop = next(n for n in prompt.values() if n["class_type"] == "InfiniteTalkFacePlan")
    assert (crop["inputs"]["width"], crop["inputs"]["height"]) == (256, 320)


def test_patch_errors_say_what_to_change(tmp_path):
    with pytest.raises(PatchError, match="use the I2V workflow"):
        apply(_api("v2v_dubbing"), _job(tmp_path, source=tmp_path / "portrait.png"), "b")
    with pytest.raises(PatchError, match="no node titled 'Nope'"):
        apply(_api("v2v_dubbing"), _job(tmp_path, overrides={("Nope", "x"): 1}), "b")
    workflow = _api("v2v_dubbing")
    for node in workflow.values():
        if node["class_type"] == "LoadAudio":
            node["_meta"]["title"] = "Source video"
    with pytest.raises(PatchError, match="2 nodes are titled 'Source video'"):
        apply(workflow, _job(tmp_path), "b")


# ---- /object_info checks
@pytest.fixture(scope="module")
def object_info():
    specs = copy.deepcopy(export_api.offline_specs())
    specs["InfiniteTalkModelLoader"]["input"]["required"]["model"][0] = ["tiny.safetensors"]
    return specs


def test_validation_names_missing_nodes_models_and_bad_values(tmp_path, object_info):
    prompt, media = apply(_api("v2v_dubbing"), _job(tmp_path), "b")
    skip = {(n, k) for n, k, _ in media}
    found = problems(prompt, object_info, skip)
    assert any("'wan2.1_i2v_480p_14B_fp16.safetensors'" in p and "tiny.safetensors" in p for p in found), found
    loader = next(i for i, n in prompt.items() if n["class_type"] == "InfiniteTalkModelLoader")
    prompt[loader]["inputs"]["model"] = "tiny.safetensors"
    sampler = next(i for i, n in prompt.items() if n["class_type"] == "InfiniteTalkSampler")
    prompt[sampler]["inputs"]["steps"] = 0
    info = {k: v for k, v in object_info.items() if k != "SaveVideo"}
    found = problems(prompt, info, skip)
    assert any("node type 'SaveVideo' is not installed" in p for p in found), found
    assert any("steps: 0 is below the minimum 1" in p for p in found), found
    assert not any("Source video" in p for p in found), "uploaded media are not checked against the combo"


# ---- manifest
def test_manifest_survives_a_torn_line_and_skips_only_finished_unchanged_jobs(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    (tmp_path / "a.mp4").write_bytes(b"x")
    m.record("a", "queued", fingerprint="f1")
    m.record("a", "done", outputs=["a.mp4"], fingerprint="f1")
    m.record("b", "failed", error="boom", fingerprint="f2")
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"job": "c", "sta')  # killed mid-write
    again = Manifest(tmp_path / "m.jsonl")
    assert again.finished("a", "f1")["outputs"] == ["a.mp4"]
    assert again.finished("a", "other") is None and again.finished("b", "f2") is None and "c" not in again.latest
    (tmp_path / "a.mp4").unlink()
    assert again.finished("a", "f1") is None, "a deleted output is made again"


def test_fingerprint_follows_inputs(tmp_path):
    _files(tmp_path, "a.wav")
    one = fingerprint({"seed": 1}, {"w": 1}, [tmp_path / "a.wav"])
    assert one == fingerprint({"seed": 1}, {"w": 1}, [tmp_path / "a.wav"])
    assert one != fingerprint({"seed": 2}, {"w": 1}, [tmp_path / "a.wav"])
    assert one != fingerprint({"seed": 1}, {"w": 2}, [tmp_path / "a.wav"])


def test_rejection_text_lists_node_errors():
    body = json.dumps({"error": {"message": "Prompt outputs failed validation", "details": ""},
                       "node_errors": {"6": {"class_type": "InfiniteTalkModelLoader", "errors": [
                           {"message": "Value not in list", "details": "model: 'x' not in []"}]}}}).encode()
    assert rejection_text(body) == ("Prompt outputs failed validation; node 6 (InfiniteTalkModelLoader): "
                                    "Value not in list: model: 'x' not in []")


# ---- websocket framing against a local socket server
def _serve(frames):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def run():
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = [line.split(b": ")[1] for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
        import base64
        import hashlib
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        for frame in frames:
            conn.sendall(frame)
        conn.settimeout(2)
        try:
            received.append(conn.recv(4096))
        except OSError:
            pass
        conn.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], received, thread


def _frame(op, payload, fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    head += bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n) if n < 65536 else \
        bytes([127]) + struct.pack(">Q", n)
    return head + payload


def test_websocket_reads_text_of_any_length_skips_binary_answers_ping():
    big = json.dumps({"type": "big", "data": "x" * 70000}).encode()
    mid = json.dumps({"type": "mid", "data": "y" * 300}).encode()
    frames = [_frame(0x2, b"\x00" * 500), _frame(0x9, b"hi"), _frame(0x1, mid), _frame(0x1, big),
              _frame(0x1, b'{"type": "fr'), _frame(0x0, b'ag"}'), _frame(0x1, b'{"type": "ag', fin=False),
              _frame(0x0, b'ain"}')]
    frames[4] = _frame(0x1, b'{"type": "fr', fin=False)
    port, received, thread = _serve(frames)
    ws = WebSocket(f"http://127.0.0.1:{port}/ws?clientId=x")
    assert ws.recv(5)["type"] == "mid"
    assert len(ws.recv(5)["data"]) == 70000
    assert ws.recv(5) == {"type": "frag"} and ws.recv(5) == {"type": "again"}
    with pytest.raises(WebSocketClosed):
        ws.recv(5)
    thread.join(5)
    assert received and received[0][0] == 0x8A  # the pong, masked
    ws.close()


# ---- scheduler over fake servers
class FakeServer:
    """In-process stand-in: records queued prompts; a job "runs" until released; ``die`` makes it unreachable."""

    def __init__(self, name, object_info, error=None):
        self.name, self.info, self.error = name, object_info, error
        self.queued, self.uploads, self.cancelled, self.dead = [], [], [], False
        self.started = threading.Event()
        self.hold = threading.Event()
        self.hold.set()

    def _check(self):
        if self.dead:
            raise ServerDown(f"{self.name}: connection refused")

    def object_info(self):
        self._check()
        return self.info

    def upload(self, path):
        self._check()
        self.uploads.append(path.name)
        return "up-" + path.name

    def connect(self, client_id):
        self._check()
        return io.StringIO()

    def queue(self, prompt, client_id):
        self._check()
        self.queued.append(prompt)
        return f"{self.name}-{len(self.queued)}"

    def follow(self, ws, client_id, prompt_id, on_event, should_stop):
        sampler = next(i for i, n in self.queued[-1].items() if n["class_type"] == "InfiniteTalkSampler")
        on_event("executing", {"node": sampler, "prompt_id": prompt_id})
        on_event("progress", {"value": 1, "max": 2, "prompt_id": prompt_id})
        self.started.set()
        for _ in range(200):
            if self.hold.wait(0.05) or should_stop():
                break
        if should_stop():
            return {}
        self._check()
        if self.error:
            raise JobFailed(self.error)
        return {"outputs": {"16": {"images": [{"filename": "v_00001.mp4", "subfolder": "b", "type": "output"}],
                                   "animated": [True]}}}

    def download(self, ref, dest):
        self._check()
        dest.write_bytes(b"mp4 from " + self.name.encode())

    def cancel(self, prompt_id):
        self.cancelled.append(prompt_id)


@pytest.fixture
def batch_setup(tmp_path, object_info):
    info = copy.deepcopy(object_info)
    for node in _api("v2v_dubbing").values():  # the server has every model file the example names
        spec = info[node["class_type"]]["input"]
        for name, value in node["inputs"].items():
            entry = {**spec.get("required", {}), **spec.get("optional", {})}.get(name)
            if entry and isinstance(entry[0], list) and isinstance(value, str) and "." in value:
                entry[0] = entry[0] + [value]
    _files(tmp_path, *[f"m/c{i}.mp4" for i in range(4)], "m/s.wav")
    jobs = [Job(id=f"j{i}", source=tmp_path / f"m/c{i}.mp4", audio=tmp_path / "m/s.wav", seed=i) for i in range(4)]

    def make(servers, jobs_=None):
        manifest = Manifest(tmp_path / "out/manifest.jsonl")
        run = Batch(servers, _api("v2v_dubbing"), jobs_ or jobs, tmp_path / "out", manifest,
                    Progress(len(jobs_ or jobs), io.StringIO()))
        run.plan()
        return run
    return info, jobs, make, tmp_path


def test_jobs_fan_out_one_per_server_and_rerun_skips_them(batch_setup):
    info, jobs, make, tmp = batch_setup
    a, b = FakeServer("a:1", info), FakeServer("b:1", info)
    results = make([a, b]).run()
    assert all(r.state == "done" for r in results.values()), results
    assert len(a.queued) + len(b.queued) == 4 and a.queued and b.queued
    assert (tmp / "out/j0.mp4").read_bytes().startswith(b"mp4 from")
    assert a.uploads.count("s.wav") == 1, "the same file is uploaded once per server"
    seeds = sorted(next(n for n in p.values() if n["class_type"] == "InfiniteTalkSampler")["inputs"]["seed"]
                   for p in a.queued + b.queued)
    assert seeds == [0, 1, 2, 3]
    again = make([FakeServer("a:1", info)]).run()
    assert all(r.state == "skipped" for r in again.values())
    assert "done 0, failed 0, skipped 4" in batch.summary(again)


def test_a_server_dying_mid_job_hands_the_job_to_another(batch_setup):
    info, jobs, make, tmp = batch_setup
    a, b = FakeServer("a:1", info), FakeServer("b:1", info)
    a.hold.clear()
    run = make([a, b], jobs[:3])

    def kill():
        a.started.wait(10)
        a.dead = True
        a.hold.set()

    threading.Thread(target=kill, daemon=True).start()
    results = run.run()
    assert all(r.state == "done" and r.server == "b:1" for r in results.values()), results
    states = [json.loads(line)["state"] for line in (tmp / "out/manifest.jsonl").read_text().splitlines()]
    assert states.count("requeued") == 1 and states.count("done") == 3


def test_invalid_jobs_are_reported_and_never_queued(batch_setup):
    info, jobs, make, tmp = batch_setup
    bad = Job(id="bad", source=jobs[0].source, audio=jobs[0].audio,
              overrides={("InfiniteTalk Model Loader", "model"): "missing.safetensors"})
    gone = Job(id="gone", source=tmp / "nope.mp4", audio=jobs[0].audio)
    a = FakeServer("a:1", info)
    results = make([a], [bad, gone, jobs[0]]).run()
    assert results["bad"].state == "failed" and "not queued" in results["bad"].error
    assert "missing.safetensors" in results["bad"].error
    assert results["gone"].state == "failed" and "source file not found" in results["gone"].error
    assert results["j0"].state == "done" and len(a.queued) == 1


def test_execution_errors_fail_the_job_with_the_servers_text(batch_setup):
    info, jobs, make, _ = batch_setup
    results = make([FakeServer("a:1", info, error="InfiniteTalkSampler: ValueError: source too small")],
                   jobs[:1]).run()
    assert results["j0"].state == "failed" and results["j0"].error == "InfiniteTalkSampler: ValueError: source too small"
    assert "source too small" in batch.summary(results)


def test_cli_reports_bad_input_with_exit_status_2(tmp_path):
    stream = io.StringIO()
    code = batch.main(["--server", "http://127.0.0.1:9", "--workflow", str(next(API.glob("*i2v*.json"))),
                       "--jobs", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out")], stream=stream)
    assert code == 2 and "jobs file not found" in stream.getvalue()


def test_cli_with_no_reachable_server_fails_every_job(tmp_path):
    _files(tmp_path, "a.png", "b.wav")
    (tmp_path / "jobs.csv").write_text("source,audio\na.png,b.wav\n")
    stream = io.StringIO()
    code = batch.main(["--server", "http://127.0.0.1:9", "--workflow", str(next(API.glob("*i2v*.json"))),
                       "--jobs", str(tmp_path / "jobs.csv"), "--out", str(tmp_path / "out"), "--timeout", "2"],
                      stream=stream)
    assert code == 1 and "no server reachable" in stream.getvalue()


def test_progress_shows_window_and_step_of_the_sampler():
    stream = io.StringIO()
    progress = Progress(2, stream)
    progress.start("j", "gpu1:8188", steps=4)
    progress.node("j", "InfiniteTalk Sampler", True)
    progress.step("j", 5, 12)
    assert "j @ gpu1:8188" in stream.getvalue() and "window 2/3 step 1/4" in stream.getvalue()
    progress.end("j", "done")
    fraction, _ = progress.overall()
    assert fraction == 0.5


def test_a_ui_workflow_is_converted_with_each_servers_definitions(batch_setup):
    info, jobs, make, tmp = batch_setup
    a = FakeServer("a:1", info)
    manifest = Manifest(tmp / "out/manifest.jsonl")
    ui = json.loads(next((ROOT / "example_workflows").glob("*[vV]2[vV]*.json")).read_text())
    run = Batch([a], ui, jobs[:1], tmp / "out", manifest, Progress(1, io.StringIO()))
    run.plan()
    assert run.run()["j0"].state == "done"
    queued = a.queued[0]
    assert {k: v["class_type"] for k, v in queued.items()} == {k: v["class_type"] for k, v in _api("v2v_dubbing").items()}
    assert next(n for n in queued.values() if n["class_type"] == "LoadVideo")["inputs"]["file"] == "up-c0.mp4"


def test_ctrl_c_cancels_the_running_jobs_and_leaves_the_manifest_consistent(batch_setup):
    import _thread
    info, jobs, make, tmp = batch_setup
    a = FakeServer("a:1", info)
    a.hold.clear()
    run = make([a], jobs[:2])
    threading.Thread(target=lambda: (a.started.wait(10), _thread.interrupt_main()), daemon=True).start()
    results = run.run()
    assert run.stop.is_set() and set(a.cancelled) == {"a:1-1"}
    assert [r.state for r in results.values()] == ["cancelled", "cancelled"] and len(a.queued) == 1
    records = Manifest(tmp / "out/manifest.jsonl").latest
    assert records["j0"]["state"] == "cancelled" and "j1" not in records
    again = make([FakeServer("a:1", info)], jobs[:2]).run()  # the next run does both
    assert [r.state for r in again.values()] == ["done", "done"]


def test_a_job_runs_only_on_servers_that_have_its_models(batch_setup):
    info, jobs, make, _ = batch_setup
    poor = copy.deepcopy(info)
    poor["InfiniteTalkModelLoader"]["input"]["required"]["model"][0] = []
    a, b = FakeServer("a:1", poor), FakeServer("b:1", info)
    results = make([a, b], jobs[:2]).run()
    assert all(r.state == "done" and r.server == "b:1" for r in results.values()) and not a.queued
