"""Fixtures for the integration tests, once per ComfyUI found (comfyui_harness.find_comfyuis: COMFYUI_PATH,
several separated by os.pathsep, or $HOME/ComfyUI and $HOME/ComfyUI-*); the test ids carry the version
(``test_x[comfyui-0.8.0]``) and the summary counts results per ComfyUI.

``comfyui``: the ComfyUIInstall under test (``.path``, ``.python``, ``.version``): a test starting a server of its
own uses ``with ComfyServer(comfyui.path, base, comfyui.python, extra_nodes=...) as server:`` (started, always
stopped).
``comfy_server``: a real ComfyUI (--cpu, temp base dir) with this pack installed. Gives ``.url``, ``.version``,
``.models_dir`` / ``.input_dir`` / ``.output_dir`` (Path), ``.object_info()``, ``.run(prompt, timeout=...) ->
/history entry`` (raises with the server's error), ``.queue(prompt) -> prompt id`` and ``.wait(prompt_id, timeout=...)
-> /history entry`` (whatever the outcome), ``.interrupt()``, ``.free(**flags)``, ``.get(path)`` and ``.log()``.
``stub_server``: the same, one per test module, with the stub nodes (sampler_stub_nodes/) beside the pack.
Skips (one line) when no ComfyUI is found; every server is shut down.
"""
import pytest

from comfyui_harness import ENABLE_HINT, ComfyServer, find_comfyuis, stub_comfy_server

try:
    INSTALLS, _PROBLEM = find_comfyuis(), None
except ValueError as e:  # COMFYUI_PATH / COMFYUI_PYTHON set but wrong: every integration test errors with this
    INSTALLS, _PROBLEM = [], str(e)


@pytest.fixture(scope="session", params=INSTALLS or [None], ids=[i.id for i in INSTALLS] or ["no-comfyui"])
def comfyui(request):
    if _PROBLEM:
        raise ValueError(_PROBLEM)
    if request.param is None:
        pytest.skip(ENABLE_HINT)
    return request.param


@pytest.fixture(scope="session")
def comfy_server(comfyui, tmp_path_factory):
    with ComfyServer(comfyui.path, tmp_path_factory.mktemp(f"comfyui-{comfyui.version}"), comfyui.python) as server:
        yield server


@pytest.fixture(scope="module")
def stub_server(comfyui, tmp_path_factory):
    """A server of its own per test module and ComfyUI, with the stub nodes beside the pack (stub_comfy_server)."""
    with stub_comfy_server(comfyui, tmp_path_factory.mktemp(f"comfyui_sampler-{comfyui.version}")) as server:
        yield server


_RESULTS: dict = {}  # ComfyUI id -> {outcome: count}


def pytest_runtest_logreport(report):
    install = getattr(report, "comfyui_install", None)
    if install is None:
        return
    if report.when == "call":
        key = report.outcome
    elif report.outcome == "passed":
        return
    else:  # setup / teardown: skipped (no ComfyUI), or failed (an error)
        key = "skipped" if report.outcome == "skipped" else "error"
    counts = _RESULTS.setdefault(install, {})
    counts[key] = counts.get(key, 0) + 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    install = getattr(item, "callspec", None) and item.callspec.params.get("comfyui")
    if install is not None:
        outcome.get_result().comfyui_install = f"ComfyUI {install.version} ({install.path})"


def pytest_terminal_summary(terminalreporter):
    for install, counts in _RESULTS.items():
        terminalreporter.write_line(f"{install}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
