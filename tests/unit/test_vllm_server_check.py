"""GRPO with `vllm_mode: server`: the run waits for the server's health check before loading
anything, and an address where nothing answers is an error naming the key, not a hang in TRL."""

import http.server
import threading
import time

import pytest

from posttrain.errors import RecipeError
from posttrain.recipe import load_run
from posttrain.trainers.common import check_vllm_server

RECIPE = ("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric}]\nbatch: {per_device: 8}\n"
          "trainer: {use_vllm: true, vllm_mode: server, vllm_server_host: 127.0.0.1, vllm_server_port: PORT, "
          "vllm_server_timeout: TIMEOUT}\n")


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health/" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_server_that_answers_is_found(write_recipe, capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    loaded = load_run(write_recipe(RECIPE.replace("PORT", str(port)).replace("TIMEOUT", "5")))
    assert check_vllm_server(loaded) == f"http://127.0.0.1:{port}/health/"
    assert f"the vLLM server at http://127.0.0.1:{port} answers" in capsys.readouterr().out
    server.shutdown()


def test_nothing_answering_is_an_error_after_the_timeout(write_recipe):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    loaded = load_run(write_recipe(RECIPE.replace("PORT", str(port)).replace("TIMEOUT", "1")))
    start = time.monotonic()
    with pytest.raises(RecipeError, match=f"no vLLM server answers at http://127.0.0.1:{port}/health/") as info:
        check_vllm_server(loaded, poll_seconds=0.2)
    assert info.value.key == "trainer.vllm_server_host" and time.monotonic() - start < 5
