"""A small Hugging Face Hub for tests: the HTTP endpoints that `huggingface_hub` (and `transformers`
through it) call to publish a model repository and to download it again, served on 127.0.0.1 by
the standard library's `http.server` in a thread. State lives in memory.

Point a process at it with `HF_ENDPOINT=<server.url>`, a token it accepts in `HF_TOKEN`, and
`HF_HUB_DISABLE_XET=1`: Xet storage is not emulated, so `huggingface_hub` then uploads large and
binary files with the git-LFS protocol, which is.

The subset, for model repositories named "org/name", and the client call that needs each:

- `POST /api/repos/create`: `create_repo` (409 with the URL when it exists; the first commit holds
  `.gitattributes`).
- `POST /api/validate-yaml`: `upload_folder`/`create_commit` check the README metadata first
  (`model-index` included).
- `POST /api/models/{repo}/preupload/{rev}`: the upload mode per file, `lfs` for the LFS patterns,
  binary samples and files over 10 MiB, else `regular`.
- `POST /{repo}.git/info/lfs/objects/batch`: the git-LFS batch API, `basic` transfer, with a
  verify action; `PUT /lfs-objects/{oid}`: the upload `href` (sha256 and size are checked);
  `POST /{repo}.git/info/lfs/objects/verify`: the verify action.
- `POST /api/models/{repo}/commit/{rev}`: the ndjson commit (`header`, `file` in base64, `lfsFile`,
  `deletedFile`, `deletedFolder`).
- `POST /api/models/{repo}/branch/{name}`: `create_branch` (409 when it exists).
- `GET /api/models/{repo}[/revision/{rev}]`: `model_info`/`repo_info` (sha, private, siblings,
  cardData, model-index).
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: `list_repo_tree`/`list_repo_files`, one page
  (`snapshot_download` and transformers' tokenizer loading list the tree).
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: `hf_hub_download`, with `X-Repo-Commit`, `ETag` (the git
  blob sha1) and, for LFS files, `X-Linked-Etag` (the sha256) and `X-Linked-Size`; `Range` requests.

Errors carry the headers `huggingface_hub` turns into its exceptions (`X-Error-Code`:
`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`; `X-Error-Message`). As on the Hub, a private
repository answers an anonymous reader as if it did not exist (401, `RepoNotFound`).
Not implemented: Xet, datasets and Spaces, pull requests, multipart LFS, tags, pagination.

Example:
    >>> with HubServer(tokens={"hf_test"}) as hub:
    ...     HfApi(endpoint=hub.url, token="hf_test").create_repo("org/tiny")
    RepoUrl('http://127.0.0.1:.../org/tiny', ...)
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# What a new Hub model repository's `.gitattributes` sends to LFS (an excerpt of the Hub's default).
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.npy",
                "*.npz", "*.parquet", "*.arrow", "*.gz", "*.zip", "*.tar", "*.model", "*tfevents*")
LFS_SIZE_LIMIT = 10 * 1024 * 1024  # larger files go to LFS whatever their name


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (`git hash-object`), which the Hub uses as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file that stands in the git tree for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class FileEntry:
    """One file of a commit: its bytes, or for an LFS file the sha256 of its bytes in the LFS store."""

    size: int
    content: bytes | None = None
    lfs_sha256: str | None = None

    @property
    def blob_id(self) -> str:
        if self.lfs_sha256 is None:
            return git_blob_sha1(self.content)
        return git_blob_sha1(lfs_pointer(self.lfs_sha256, self.size))

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.blob_id


@dataclass
class Commit:
    sha: str
    files: dict[str, FileEntry]
    parent: str | None
    message: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def front_matter(readme: str) -> dict:
    """The YAML metadata block at the top of a README (empty when there is none); `HubError` (400)
    when it is not a mapping or its `model-index` misses a field the Hub requires."""
    if not readme.startswith("---"):
        return {}
    parts = readme.split("\n---", 1)
    if len(parts) != 2:
        raise HubError(400, "README metadata block is not closed by ---")
    try:
        data = yaml.safe_load(parts[0].removeprefix("---")) or {}
    except yaml.YAMLError as err:
        raise HubError(400, f"README metadata is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise HubError(400, "README metadata must be a mapping")
    for entry in data.get("model-index") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise HubError(400, "model-index entries need a name")
        for result in entry.get("results") or []:
            task, dataset, metrics = result.get("task") or {}, result.get("dataset") or {}, result.get("metrics")
            if not task.get("type") or not dataset.get("type") or not dataset.get("name") or not metrics:
                raise HubError(400, "model-index results need task.type, dataset.type, dataset.name and metrics")
            for metric in metrics:
                if not metric.get("type") or "value" not in metric:
                    raise HubError(400, "model-index metrics need a type and a value")
    return data


class HubServer:
    """The server; a context manager that serves in a daemon thread until exit.

    `tokens`: the tokens accepted for writes (and for reading private repositories).
    `requests` records `(method, path)` of every request, for tests that check what was called.
    """

    def __init__(self, tokens=("hf_test_token",)):
        self.tokens = set(tokens)
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._httpd = None
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_state = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    # -- repository state ---------------------------------------------------------------------

    def repo(self, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            raise HubError(401, f"Repository Not Found for {repo_id}", "RepoNotFound")
        return repo

    def commit(self, repo: Repo, branch: str, files: dict[str, FileEntry], message: str) -> Commit:
        parent = repo.branches.get(branch)
        digest = hashlib.sha1(json.dumps(
            [parent, message, time.time_ns(), sorted((p, f.blob_id) for p, f in files.items())]).encode())
        commit = Commit(digest.hexdigest(), files, parent, message, _now())
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    def upload_mode(self, path: str, size: int, sample: bytes) -> str:
        name = path.rsplit("/", 1)[-1]
        if size > LFS_SIZE_LIMIT or b"\0" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS):
            return "lfs"
        return "regular"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect
    server_state: HubServer

    def log_message(self, *args):  # quiet: pytest shows failures, not access logs
        pass

    # -- plumbing ---------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self):
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError:
            raise HubError(400, "request body is not JSON") from None

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.server_state.tokens

    def _require_token(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, data, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(data).encode(), headers)

    def _dispatch(self):
        state = self.server_state
        split = urlsplit(self.path)
        with state.lock:
            state.requests.append((self.command, split.path))
        segments = [unquote(s) for s in split.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        # Read whole before routing, so that the connection stays usable whatever the answer.
        self.body = self._read_body() if self.command in ("POST", "PUT") else b""
        try:
            self._route(segments, query)
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send_json({"error": err.message}, err.status, headers)

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # -- routes -----------------------------------------------------------------------------------

    def _route(self, seg: list[str], query: dict) -> None:
        method = self.command
        if seg[:1] == ["api"]:
            if seg[1:3] == ["repos", "create"] and method == "POST":
                return self.create_repo()
            if seg[1:2] == ["validate-yaml"] and method == "POST":
                return self.validate_yaml()
            if seg[1:2] == ["models"] and len(seg) >= 4:
                repo_id, rest = f"{seg[2]}/{seg[3]}", seg[4:]
                if not rest and method == "GET":
                    return self.model_info(repo_id, "main")
                if rest[:1] == ["revision"] and len(rest) == 2 and method == "GET":
                    return self.model_info(repo_id, rest[1])
                if rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                    return self.tree(repo_id, rest[1], "/".join(rest[2:]), query)
                if rest[:1] == ["preupload"] and len(rest) == 2 and method == "POST":
                    return self.preupload(repo_id, rest[1], query)
                if rest[:1] == ["commit"] and len(rest) == 2 and method == "POST":
                    return self.commit(repo_id, rest[1], query)
                if rest[:1] == ["branch"] and len(rest) == 2 and method == "POST":
                    return self.create_branch(repo_id, rest[1])
        if seg[:1] == ["lfs-objects"] and len(seg) == 2 and method == "PUT":
            return self.lfs_put(seg[1])
        if len(seg) >= 3 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            return self.lfs_batch(f"{seg[0]}/{seg[1].removesuffix('.git')}")
        if len(seg) >= 3 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "verify"]:
            return self.lfs_verify()
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self.resolve(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HubError(404, f"{method} {self.path} is not served by this test Hub")

    def create_repo(self):
        self._require_token()
        body = self._json_body()
        if body.get("type", "model") != "model":
            raise HubError(400, "this test Hub serves model repositories only")
        if not body.get("organization") or not body.get("name"):
            raise HubError(400, "repo ids must be 'org/name'")
        repo_id = f"{body['organization']}/{body['name']}"
        state = self.server_state
        with state.lock:
            if repo_id in state.repos:  # the Hub's 409 names the existing repository's URL too
                message = "You already created this model repo"
                return self._send_json({"error": message, "url": f"{state.url}/{repo_id}"}, 409,
                                       {"X-Error-Message": message})
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = state.repos[repo_id] = Repo(repo_id, private, _now())
            attributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
            state.commit(repo, "main", {".gitattributes": FileEntry(len(attributes), attributes)}, "initial commit")
        self._send_json({"url": f"{state.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def validate_yaml(self):
        body = self._json_body()
        try:
            front_matter(body.get("content", ""))
        except HubError as err:
            return self._send_json({"errors": [{"message": err.message}], "warnings": []}, 400)
        self._send_json({"errors": [], "warnings": []})

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def model_info(self, repo_id: str, revision: str):
        repo = self.server_state.repo(repo_id, self._authorized())
        commit = self._commit_at(repo, revision)
        readme = commit.files.get("README.md")
        card = front_matter(readme.content.decode()) if readme is not None and readme.content else {}
        siblings = [{"rfilename": path, "size": f.size, "blobId": f.blob_id,
                     **({"lfs": {"size": f.size, "sha256": f.lfs_sha256,
                                 "pointerSize": len(lfs_pointer(f.lfs_sha256, f.size))}} if f.lfs_sha256 else {})}
                    for path, f in sorted(commit.files.items())]
        self._send_json({
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": commit.sha,
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "createdAt": repo.created, "lastModified": commit.date, "tags": list(card.get("tags") or []),
            "library_name": card.get("library_name"), "pipeline_tag": card.get("pipeline_tag"),
            "cardData": card or None, "model-index": card.get("model-index"), "siblings": siblings,
        })

    def tree(self, repo_id: str, revision: str, path: str, query: dict):
        repo = self.server_state.repo(repo_id, self._authorized())
        commit = self._commit_at(repo, revision)
        recursive = query.get("recursive", "False").lower() == "true"
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries, folders = [], set()
        for file_path, f in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                    "size": 0, "path": folder})
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": file_path}
                if f.lfs_sha256:
                    entry["lfs"] = {"oid": f.lfs_sha256, "size": f.size,
                                    "pointerSize": len(lfs_pointer(f.lfs_sha256, f.size))}
                entries.append(entry)
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist at {revision}", "EntryNotFound",
                           {"X-Repo-Commit": commit.sha})
        self._send_json(entries)

    def preupload(self, repo_id: str, revision: str, query: dict):
        self._require_token()
        body = self._json_body()
        repo = self.server_state.repo(repo_id, True)
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not served by this test Hub")
        head = repo.resolve(revision)
        if head is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        files = []
        for item in body.get("files", []):
            mode = self.server_state.upload_mode(item["path"], int(item["size"]), base64.b64decode(item["sample"]))
            existing = head.files.get(item["path"])
            oid = None if existing is None else (existing.lfs_sha256 if mode == "lfs" else existing.blob_id)
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send_json({"files": files, "commitOid": head.sha})

    def lfs_batch(self, repo_id: str):
        self._require_token()
        body = self._json_body()
        self.server_state.repo(repo_id, True)
        if body.get("operation") != "upload":
            raise HubError(400, "only LFS uploads are served (downloads go through /resolve)")
        objects = []
        for obj in body.get("objects", []):
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server_state.lfs:  # known content needs no upload
                answer["actions"] = {
                    "upload": {"href": f"{self.server_state.url}/lfs-objects/{obj['oid']}"},
                    "verify": {"href": f"{self.server_state.url}/{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(answer)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, oid: str):
        data = self.body
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not hash to {oid}")
        with self.server_state.lock:
            self.server_state.lfs[oid] = data
        self._send(200, b"")

    def lfs_verify(self):
        self._require_token()
        body = self._json_body()
        stored = self.server_state.lfs.get(body.get("oid"))
        if stored is None or len(stored) != body.get("size"):
            raise HubError(404, f"LFS object {body.get('oid')} of size {body.get('size')} was not uploaded")
        self._send_json({"message": "verified"})

    def commit(self, repo_id: str, revision: str, query: dict):
        self._require_token()
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        state = self.server_state
        repo = state.repo(repo_id, True)
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not served by this test Hub")
        with state.lock:
            head = self._commit_at(repo, revision)
            if revision not in repo.branches:
                raise HubError(400, f"can only commit to a branch, not {revision}")
            files = dict(head.files)
            message = "commit"
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    message = value.get("summary") or message
                    parent = value.get("parentCommit")
                    if parent and parent != head.sha:
                        raise HubError(412, f"parent commit {parent} is not the head of {revision}")
                elif key == "file":
                    content = base64.b64decode(value["content"])
                    files[value["path"]] = FileEntry(len(content), content=content)
                elif key == "lfsFile":
                    stored = state.lfs.get(value["oid"])
                    if stored is None or len(stored) != value["size"]:
                        raise HubError(422, f"LFS file {value['path']} ({value['oid']}) was never uploaded")
                    files[value["path"]] = FileEntry(value["size"], lfs_sha256=value["oid"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(folder)}
                else:
                    raise HubError(400, f"commit operation {key!r} is not served by this test Hub")
            readme = files.get("README.md")
            if readme is not None and readme.content is not None:
                front_matter(readme.content.decode())
            commit = state.commit(repo, revision, files, message)
        self._send_json({"success": True, "commitOid": commit.sha,
                         "commitUrl": f"{state.url}/{repo_id}/commit/{commit.sha}"})

    def create_branch(self, repo_id: str, branch: str):
        self._require_token()
        body = self._json_body()
        state = self.server_state
        repo = state.repo(repo_id, True)
        with state.lock:
            if branch in repo.branches:
                raise HubError(409, f"Reference {branch} already exists")
            start = self._commit_at(repo, body.get("startingPoint") or "main")
            repo.branches[branch] = start.sha
        self._send_json({})

    def resolve(self, repo_id: str, revision: str, path: str):
        state = self.server_state
        repo = state.repo(repo_id, self._authorized())
        commit = self._commit_at(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        data = entry.content if entry.lfs_sha256 is None else state.lfs[entry.lfs_sha256]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs_sha256:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_sha256}"', "X-Linked-Size": entry.size})
        status, wanted = 200, self.headers.get("Range", "")
        if wanted.startswith("bytes=") and self.command == "GET":
            start, _, end = wanted.removeprefix("bytes=").partition("-")
            first, last = int(start or 0), int(end) if end else len(data) - 1
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            data, status = data[first:last + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")


__all__ = ["HubServer", "LFS_PATTERNS", "front_matter", "git_blob_sha1"]
