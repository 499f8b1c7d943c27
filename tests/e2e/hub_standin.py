"""A stand-in for the Hugging Face hub's upload API, enough for huggingface_hub's own client
(create_repo, upload_folder, upload_file): repositories are created, README metadata is
validated, every file is taken as a regular (non-LFS) blob and each commit's files are kept in
memory. This machine cannot reach the real hub; the client code that talks to it is the real one."""

from __future__ import annotations

import base64
import http.server
import json
import threading


class StandInHub:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: list[tuple[str, str]] = []  # (repo, message)
        self.tokens: set[str] = set()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _json(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.tokens.add(self.headers.get("authorization", ""))
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:3] == ["api", "repos", "create"]:
                    request = json.loads(body)
                    name = f"{request.get('organization') or 'user'}/{request['name']}"
                    hub.repos.setdefault(name, {})
                    return self._json(200, {"url": f"{hub.url}/{name}", "name": name})
                if parts[:2] == ["api", "validate-yaml"]:
                    return self._json(200, {"errors": [], "warnings": []})
                if parts[:2] == ["api", "models"] and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                if parts[:2] == ["api", "models"] and parts[4] == "commit":
                    repo = f"{parts[2]}/{parts[3]}"
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            hub.commits.append((repo, item["value"]["summary"]))
                        elif item["key"] == "file":
                            hub.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._json(200, {"commitUrl": f"{hub.url}/{repo}/commit/1", "commitOid": "0" * 40})
                return self._json(404, {"error": f"not in the stand-in: POST {self.path}"})

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
