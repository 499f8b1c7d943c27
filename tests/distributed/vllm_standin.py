"""A stand-in for `trl vllm-serve` in the SLURM test: it takes the same arguments, answers
TRL's health check (GET /health/) and logs who asked, so the test sees that the training side
reached the address the job resolved. It generates nothing (the test cluster has no GPU)."""

import argparse
import http.server
import signal
import sys


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server interface
        ok = self.path.rstrip("/") == "/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if ok else b"{}")
        print(f"stand-in: GET {self.path} from {self.client_address[0]}", flush=True)

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args, rest = parser.parse_known_args()
    server = http.server.HTTPServer((args.host, args.port), Health)
    signal.signal(signal.SIGTERM, lambda *_: (print("stand-in: stopped", flush=True), sys.exit(0)))
    print(f"stand-in: serving {args.model} on {args.host}:{args.port} ({' '.join(rest)})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
