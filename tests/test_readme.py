"""Every ```python block of README.md runs as written.

Marker grammar (an HTML comment on the line directly above a ```python fence)::

    <!-- readme-test: skip=REASON -->          not run (only for blocks that need a server);
                                               the reason runs to the end of the comment
    <!-- readme-test: subprocess -->           run alone in a fresh Python process
    <!-- readme-test: backend=jax -->          fresh process with that KERAS_BACKEND
    <!-- readme-test: devices=2 -->            fresh process with 2 logical CPU devices
    <!-- readme-test: timeout=120 -->          seconds before the block counts as failed

Keys combine, separated by spaces. Unmarked blocks run in order in one shared namespace, in one
fresh process whose working directory is a temporary folder (a block may use names from the
blocks above it). A key the parser does not know is an error, so that a typo cannot silently
skip a block.
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MARKER = re.compile(r"^\s*<!--\s*readme-test:(.*?)-->\s*$")
KEYS = ("skip", "subprocess", "backend", "devices", "timeout")
BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_TIMEOUT = 300


def parse_marker(text):
    """The options of one marker's text (what follows ``readme-test:``), as a dict.

    Raises:
        ValueError: an unknown key, a key given twice, a value where none belongs or a missing
            or malformed value.
    """
    options = {}
    head, skip, reason = text.partition("skip=")
    if skip and head and not head[-1].isspace():
        head, skip, reason = text, "", ""  # e.g. "noskip=": left to the key check below
    tokens = head.split() + ([f"skip={reason.strip()}"] if skip else [])
    for token in tokens:
        key, sep, value = token.partition("=")
        if key not in KEYS:
            raise ValueError(f"unknown readme-test key {key!r} in {text.strip()!r}; "
                             f"known keys: {', '.join(KEYS)}")
        if key in options:
            raise ValueError(f"readme-test key {key!r} given twice in {text.strip()!r}")
        if key == "subprocess":
            if sep:
                raise ValueError(f"`subprocess` takes no value, got {token!r}")
            options[key] = True
            continue
        if not value:
            raise ValueError(f"readme-test key {key!r} needs a value ({key}=...)")
        if key == "backend" and value not in BACKENDS:
            raise ValueError(f"backend={value!r}: expected one of {BACKENDS}")
        if key in ("devices", "timeout"):
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{key}={value!r}: expected a positive integer")
            value = int(value)
        options[key] = value
    return options


def extract_blocks(text):
    """``[(line, code, options)]`` for every ```python block (line: the fence's, 1-based)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError(f"README.md line {i + 1}: unterminated ```python block")
            match = MARKER.match(lines[i - 1]) if i > 0 else None
            options = parse_marker(match.group(1)) if match else {}
            blocks.append((start, "\n".join(lines[start:end]) + "\n", options))
            i = end
        i += 1
    return blocks


def _readme_blocks():
    with open(README, encoding="utf-8") as f:
        return extract_blocks(f.read())


BLOCKS = _readme_blocks()
SHARED = [(line, code) for line, code, options in BLOCKS if not options]
SEPARATE = [block for block in BLOCKS if block[2]]

# Runs the blocks of a JSON file in order in one namespace and names the one that fails.
_DRIVER = """
import json, sys, time, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for line, code in blocks:
    start, cpu = time.perf_counter(), time.process_time()
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"README.md block at line {line} failed")
    print(f"[README.md:{line}] {time.perf_counter() - start:.1f} s wall, "
          f"{time.process_time() - cpu:.1f} s CPU", file=sys.stderr, flush=True)
"""


def _tf_devices_prelude(count):
    return (
        "import tensorflow as tf\n"
        "_cpus = tf.config.list_physical_devices('CPU')\n"
        "tf.config.set_logical_device_configuration(\n"
        f"    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * {count})\n"
        "del _cpus\n")


def _run(blocks, tmp_path, env_extra=None, timeout=DEFAULT_TIMEOUT):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(env_extra or {})
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps(blocks))
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    proc = subprocess.run([sys.executable, str(driver), str(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_the_readme_has_blocks_and_only_server_blocks_are_skipped():
    assert len(SHARED) >= 8
    for line, code, options in BLOCKS:
        if "skip" in options:
            assert "server" in options["skip"], (
                f"README.md line {line}: only a block that needs a running server may be "
                f"skipped, got skip={options['skip']!r}")


def test_unmarked_blocks_run_in_order_in_one_namespace(tmp_path):
    _run(SHARED, tmp_path)


@pytest.mark.parametrize("line,code,options", SEPARATE, ids=[f"line{b[0]}" for b in SEPARATE])
def test_marked_block(line, code, options, tmp_path):
    if "skip" in options:
        pytest.skip(options["skip"])
    env = {}
    backend = options.get("backend")
    if backend:
        env["KERAS_BACKEND"] = backend
    devices = options.get("devices")
    if devices:
        if (backend or os.environ.get("KERAS_BACKEND", "tensorflow")) == "jax":
            env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                f" --xla_force_host_platform_device_count={devices}").strip()
        elif (backend or os.environ.get("KERAS_BACKEND", "tensorflow")) == "tensorflow":
            code = _tf_devices_prelude(devices) + code
    _run([(line, code)], tmp_path, env, timeout=options.get("timeout", DEFAULT_TIMEOUT))


# The parser --------------------------------------------------------------------------------

def test_parser_rejects_an_unknown_key():
    with pytest.raises(ValueError, match="unknown readme-test key 'skp'"):
        parse_marker(" skp=needs a server ")
    with pytest.raises(ValueError, match="unknown readme-test key"):
        extract_blocks("<!-- readme-test: subproces -->\n```python\nx = 1\n```\n")


def test_parser_rejects_malformed_values():
    for text in ("backend=tf", "devices=0", "devices=two", "timeout=", "subprocess=1",
                 "subprocess subprocess"):
        with pytest.raises(ValueError):
            parse_marker(text)


def test_parser_reads_combined_keys_and_leaves_unmarked_blocks_unmarked():
    text = ("intro\n```python\na = 1\n```\n"
            "<!-- readme-test: backend=jax devices=2 timeout=60 -->\n```python\nb = 2\n```\n"
            "<!-- readme-test: skip=needs a running server -->\n```python\nc = 3\n```\n"
            "```bash\nls\n```\n")
    blocks = extract_blocks(text)
    assert [(line, options) for line, _, options in blocks] == [
        (2, {}), (6, {"backend": "jax", "devices": 2, "timeout": 60}),
        (10, {"skip": "needs a running server"})]
    assert blocks[1][1] == "b = 2\n"
