"""``hotline``: the admin's command line.

    hotline check FILE        validate; print every issue as file:line: key: message
    hotline prompts FILE      synthesize the Mandarin prompts (espeak-ng + sox)
    hotline compile FILE DIR  write the Asterisk configuration to DIR, for reading
    hotline apply FILE        validate, compile, swap in atomically, reload, verify
    hotline up FILE           start Asterisk, Redis and the controller; Ctrl-C stops all
    hotline down              stop what `hotline up` started
    hotline status            health of each part
    hotline passwd            hash a password for users: in the YAML
    hotline controller        run the controller alone (used by tests)

Exit status: 0 ok, 1 the config or the running system has a problem, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dialplan.loader import ConfigError
from dialplan.model import Config
from dialplan.validate import load_config

from . import cpus
from .runtime import AsteriskProcess, AsteriskRoot, Instance, SetupError, cache_dir

log = logging.getLogger("hotline")


def generated_prompts_dir() -> Path:
    return cache_dir() / "prompts"


def prompt_dirs_for(config_file: Path) -> list[Path]:
    """An admin's recording in config/prompts/ wins over the generated prompt."""
    from recordings.prompts import prompt_dirs

    return prompt_dirs(config_file.resolve().parent, generated_prompts_dir())


def _instance(name: str) -> Instance:
    return Instance(AsteriskRoot.locate(), name)


# ----------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file, prompt_dirs_for(args.file))
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        print(f"{args.file}: {len(e.issues)} problem(s); nothing was changed", file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok ({len(cfg.numbers)} numbers, {len(cfg.menus)} menus, "
        f"{len(cfg.queues)} queues, {len(cfg.seats)} seats, {len(cfg.trunks)} trunks)"
    )
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from recordings.prompts import PromptError, synthesize

    try:
        cfg = load_config(args.file)  # no prompt-file check: we are making them
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    out = generated_prompts_dir()
    try:
        made = synthesize(cfg.prompts, out, force=args.force)
    except PromptError as e:
        print(f"prompts: {e}", file=sys.stderr)
        return 1
    print(f"{len(cfg.prompts)} prompts in {out} ({len(made)} rendered now)")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from pathlib import PurePosixPath

    from dialplan.compile import Target, compile_asterisk_conf, compile_config, config_version

    try:
        cfg = load_config(args.file, prompt_dirs_for(args.file))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    text = args.file.read_text(encoding="utf-8")
    version = config_version(text)
    target = Target(PurePosixPath("/srv/hotline/main"), PurePosixPath("/usr/lib/asterisk/modules"),
                    "<generated at hotline up>", str(args.file))
    args.out.mkdir(parents=True, exist_ok=True)
    files = compile_config(cfg, target, version)
    files["asterisk.conf"] = compile_asterisk_conf(cfg, target, version)
    for name, body in files.items():
        (args.out / name).write_text(body, encoding="utf-8")
    print(f"wrote {len(files)} files to {args.out}")
    return 0


async def _apply(instance: Instance, file: Path) -> str:
    from dialplan.apply import ADMIN_USER, ami_secret, apply_release, build_release
    from hotline.ami import AmiClient

    text = file.read_text(encoding="utf-8")
    release = build_release(instance, text, str(file), prompt_dirs_for(file))
    net = release.config.network
    async with AmiClient(net.ami.bind, net.ami.port, ADMIN_USER, ami_secret(instance, ADMIN_USER)) as ami:
        await apply_release(instance, ami, release)
    return release.version


def cmd_apply(args: argparse.Namespace) -> int:
    from dialplan.apply import ApplyError

    try:
        inst = _instance(args.instance)
        version = asyncio.run(_apply(inst, args.file))
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        print("the running config was kept", file=sys.stderr)
        return 1
    except (ApplyError, SetupError, OSError) as e:
        print(f"apply failed: {e}\nthe running config was kept", file=sys.stderr)
        return 1
    _signal_controller(inst, signal.SIGHUP)
    print(f"config {version} is live")
    return 0


def _signal_controller(inst: Instance, sig: int) -> bool:
    pidfile = inst.state / "controller.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), sig)
        return True
    return False


def _busy_ports(cfg: Config) -> list[str]:
    """Every configured listening port another program already holds."""
    import socket

    net = cfg.network
    wanted = [("sip", net.sip, socket.SOCK_DGRAM), ("sip", net.sip, socket.SOCK_STREAM)]
    for name in ("ami", "fastagi", "http", "redis", "audiosocket"):
        ep = getattr(net, name, None)
        if ep is not None:
            wanted.append((name, ep, socket.SOCK_STREAM))
    busy = []
    for name, ep, kind in wanted:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((ep.bind, ep.port))
            except OSError as e:
                proto = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                busy.append(f"network.{name}: {ep.bind}:{ep.port}/{proto} is in use ({e.strerror})")
    return busy


def _start_redis(inst: Instance, cfg: Config) -> subprocess.Popen[bytes]:
    d = inst.state / "redis"
    d.mkdir(exist_ok=True)
    r = cfg.network.redis
    proc = subprocess.Popen(
        ["redis-server", "--bind", r.bind, "--port", str(r.port), "--dir", str(d),
         "--save", "", "--appendonly", "yes", "--protected-mode", "yes", "--daemonize", "no",
         "--logfile", str(d / "redis.log")],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((r.bind, r.port), 0.2):
            return proc
        if proc.poll() is not None:
            raise SetupError(f"redis-server exited ({proc.returncode}); see {d / 'redis.log'}")
        time.sleep(0.05)
    raise SetupError("redis-server did not listen within 10 s")


def cmd_up(args: argparse.Namespace) -> int:
    from dialplan.apply import activate, build_release

    try:
        inst = _instance(args.instance)
        cfg = load_config(args.file, prompt_dirs_for(args.file))
    except ConfigError as e:
        for issue in e.issues:
            print(issue, file=sys.stderr)
        return 1
    except SetupError as e:
        print(e, file=sys.stderr)
        return 1
    pidfile = inst.state / "hotline.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(pidfile.read_text()), 0)
            print(f"instance {inst.name!r} is already up (pid {pidfile.read_text()}); `hotline down` first",
                  file=sys.stderr)
            return 1
    if busy := _busy_ports(cfg):
        for line in busy:
            print(line, file=sys.stderr)
        print("nothing was started; stop what holds these ports or change network: in the YAML",
              file=sys.stderr)
        return 1
    try:
        ast_cpus = cpus.check("cpus.asterisk", cfg.cpus.asterisk)
        ctl_cpus = cpus.check("cpus.controller", cfg.cpus.controller)
    except SetupError as e:
        print(e, file=sys.stderr)
        return 1
    inst.prepare()
    release = build_release(inst, args.file.read_text(encoding="utf-8"), str(args.file), prompt_dirs_for(args.file))
    activate(inst, release.path)
    pidfile.write_text(str(os.getpid()))
    (inst.state / "controller.pid").write_text(str(os.getpid()))
    cpus.pin_self(ctl_cpus)  # before any thread or child: they inherit it (Redis too)
    redis_proc = _start_redis(inst, cfg)
    ast = AsteriskProcess(inst, ast_cpus)
    try:
        ast.start()
        _print_banner(cfg, inst)
        asyncio.run(_supervise(inst, ast))
    except SetupError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        print("stopping...", file=sys.stderr)
        ast.stop()
        redis_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            redis_proc.wait(5)
        for p in ("hotline.pid", "controller.pid"):
            with contextlib.suppress(FileNotFoundError):
                (inst.state / p).unlink()
    print("stopped", file=sys.stderr)
    return 0


async def _supervise(inst: Instance, ast: AsteriskProcess) -> None:
    """Run the controller; restart Asterisk if it dies (the controller's AMI client
    reconnects and rebuilds its view when the new Asterisk reports FullyBooted)."""
    from .controller import serve

    async def watch() -> None:
        while True:
            await asyncio.sleep(1.0)
            if ast.proc is not None and ast.proc.poll() is not None:
                log.error("Asterisk exited with %s; restarting it", ast.proc.returncode)
                try:
                    await asyncio.to_thread(ast.start)
                    log.info("Asterisk restarted")
                except SetupError as e:
                    log.error("could not restart Asterisk: %s", e)

    watcher = asyncio.create_task(watch(), name="asterisk-watch")
    try:
        await serve(inst)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _print_banner(cfg: Config, inst: Instance) -> None:
    n = cfg.network
    carrier = next((t for t in cfg.trunks.values() if t.kind == "carrier"), None)
    seats = cfg.softphone_seats()
    lines = [
        f"{cfg.hotline.name} is up (instance {inst.name}, {inst.root.version()})",
        f"  SIP      {n.sip.bind}:{n.sip.port} (UDP and TCP)",
        f"  FastAGI  {n.fastagi.bind}:{n.fastagi.port}",
        f"  AMI      {n.ami.bind}:{n.ami.port} user hotline (secret in {inst.state / 'ami-secret'})",
        f"  HTTP     http://{n.http.bind}:{n.http.port}/status",
        f"  Redis    {n.redis.bind}:{n.redis.port}",
        "  Agent seats (register a softphone with user = seat, password from the YAML):",
    ]
    for sid, s in seats.items():
        lines.append(f"    {sid:<8} {s.name}  sip:{sid}@{n.sip.bind}:{n.sip.port}")
    if carrier:
        lines += [
            "  Test call: calls enter from the carrier's address. For example, with SIPp:",
            f"    sipp -sn uac -s 12345 -i {carrier.address} -p 5070 -m 1 {n.sip.bind}:{n.sip.port}",
            "  or register a seat, then from that softphone dial 12345.",
        ]
    lines.append("  Ctrl-C or `hotline down` stops everything.")
    print("\n".join(lines), flush=True)


def cmd_down(args: argparse.Namespace) -> int:
    try:
        inst = _instance(args.instance)
    except SetupError as e:
        print(e, file=sys.stderr)
        return 1
    pidfile = inst.state / "hotline.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        print(f"instance {inst.name!r} is not up")
        return 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # `up` removes its pid file as its very last step; a parent that has not
        # reaped it yet would keep the pid alive as a zombie.
        try:
            os.kill(pid, 0)
            gone = not pidfile.exists()
        except ProcessLookupError:
            gone = True
        if gone:
            print(f"instance {inst.name!r} stopped")
            return 0
        time.sleep(0.1)
    print(f"instance {inst.name!r} (pid {pid}) did not stop within 30 s", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    try:
        inst = _instance(args.instance)
        from hotline.app import load_live_config

        cfg, _ = load_live_config(inst)
    except (SetupError, FileNotFoundError, ConfigError) as e:
        print(f"not up: {e}")
        return 1
    url = f"http://{cfg.network.http.bind}:{cfg.network.http.port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback URL from config
            st = json.load(r)
    except (urllib.error.URLError, OSError) as e:
        print(f"controller: DOWN ({url}: {e})")
        return 1
    for part in ("asterisk", "ami", "fastagi", "redis", "speech"):
        info = st.get(part, {})
        extra = ", ".join(f"{k}={v}" for k, v in info.items() if k != "ok")
        print(f"{part:<9} {'ok' if info.get('ok') else 'DOWN'}{'  ' + extra if extra else ''}")
    print(f"config    {st.get('config_version')}")
    return 0 if st.get("ok") else 1


def cmd_passwd(args: argparse.Namespace) -> int:
    """Print the password_hash line for users: in the YAML (the password never is stored)."""
    import getpass

    from .auth import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 1
    if len(password) < 8:
        print("a password needs at least 8 characters", file=sys.stderr)
        return 1
    print(f'password_hash: "{hash_password(password)}"')
    return 0


def cmd_controller(args: argparse.Namespace) -> int:
    from ivr.server import loop_factory

    from .controller import serve

    inst = _instance(args.instance)
    (inst.state / "controller.pid").write_text(str(os.getpid()))
    _pin_controller(inst)
    try:
        # uvloop when installed: the FastAGI server needs less CPU per call on it.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve(inst))
    finally:
        with contextlib.suppress(FileNotFoundError):
            (inst.state / "controller.pid").unlink()
    return 0


def _pin_controller(inst: Instance) -> None:
    """``cpus.controller`` of the active release, before the controller starts a thread."""
    from .app import load_live_config

    try:
        cfg, _version = load_live_config(inst)
        cpus.pin_self(cpus.check("cpus.controller", cfg.cpus.controller))
    except (ConfigError, SetupError, OSError) as e:
        log.warning("controller not pinned to cpus.controller: %s", e)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hotline", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_file(name: str, fn: object, **kw: object) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, **kw)  # type: ignore[arg-type]
        sp.add_argument("file", type=Path, nargs="?", default=Path("config/hotline.yaml"))
        sp.set_defaults(fn=fn)
        return sp

    with_file("check", cmd_check, help="validate a config file")
    sp = with_file("prompts", cmd_prompts, help="synthesize the default prompts")
    sp.add_argument("--force", action="store_true")
    sp = sub.add_parser("compile", help="write the Asterisk configuration to a folder")
    sp.add_argument("file", type=Path)
    sp.add_argument("out", type=Path)
    sp.set_defaults(fn=cmd_compile)
    for name, fn, help_ in (("apply", cmd_apply, "put a config live"), ("up", cmd_up, "start everything")):
        sp = with_file(name, fn, help=help_)
        sp.add_argument("--instance", default="main")
    sp = sub.add_parser("passwd", help="hash a password for users: in the YAML")
    sp.add_argument("--stdin", action="store_true", help="read the password from standard input")
    sp.set_defaults(fn=cmd_passwd)
    for name, fn in (("down", cmd_down), ("status", cmd_status), ("controller", cmd_controller)):
        sp = sub.add_parser(name)
        sp.add_argument("--instance", default="main")
        sp.set_defaults(fn=fn)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
