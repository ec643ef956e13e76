"""The `hangar` command line."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hangar import __version__
from hangar.core.db.uow import checkpoint

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hangar compute platform.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
admin_app = typer.Typer(no_args_is_help=True, help="Administration.")
template_app = typer.Typer(no_args_is_help=True, help="Root filesystem templates of this host.")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(template_app, name="template")
host_app = typer.Typer(no_args_is_help=True, help="Hosts and placement (operator only).")
app.add_typer(host_app, name="host")
console = Console(stderr=True, soft_wrap=True)  # never break lines: stderr is parsed

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="State directory (HANGAR_DATA_DIR).")
]


def _settings(data_dir: Path | None, **overrides: object) -> object:
    from hangar.server.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


def _parse_face_ports(items: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in items:
        name, sep, port = item.partition("=")
        if not sep or not port.isdigit():
            raise typer.BadParameter(f"expected FACE=PORT, got {item!r}", param_hint="--face-port")
        ports[name.strip()] = int(port)
    return ports


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Main port.")] = None,
    data_dir: DataDir = None,
    face_port: Annotated[
        list[str] | None,
        typer.Option("--face-port", help="Also serve a face at the root of a port: wrenn=9001."),
    ] = None,
    local_agent: Annotated[
        bool,
        typer.Option(
            "--local-agent/--no-local-agent",
            help="Run a host agent in this process when no agents are configured.",
        ),
    ] = True,
) -> None:
    """Run the control plane: every API face, migrations applied on start."""
    from hangar.server.run import serve as run_serve
    from hangar.server.settings import Settings
    from hangar.web.logging import configure_logging

    settings = _settings(data_dir, host=host, port=port)
    assert isinstance(settings, Settings)
    if face_port:
        settings.face_ports.update(_parse_face_ports(face_port))
    configure_logging(settings.log_level, settings.log_format)
    console.print(
        f"[bold]Hangar[/] {__version__} on http://{settings.host}:{settings.port} "
        f"(data: {settings.data_dir})"
    )
    companions = []
    if local_agent and not settings.agents:
        from hangar.agent.main import agent_server, build_agent
        from hangar.agent.settings import AgentSettings

        agent_settings = AgentSettings(data_dir=settings.data_dir / "agent")
        local = build_agent(agent_settings)
        if missing := local.missing():
            # Said before anything else starts: no capsule can run until these are installed.
            from hangar.agentproto.models import describe_missing

            console.print(
                f"[bold red]The local agent cannot run capsules:[/] {describe_missing(missing)}"
            )
            for program in missing:
                console.print(f"  {program.program}: {program.install_hint}")
        companions.append(agent_server(agent_settings, local))
        settings.agents["local"] = agent_settings.address()
    asyncio.run(run_serve(settings, companions))


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply database migrations up to the newest."""
    from hangar.core.datadir import secure_data_dir
    from hangar.core.db import Database
    from hangar.core.db.migrate import current_revision, upgrade
    from hangar.server.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)
    secure_data_dir(settings.data_dir)

    async def run() -> str | None:
        db = Database(settings.resolved_database_url())
        try:
            await upgrade(db)
            return await current_revision(db)
        finally:
            await db.dispose()

    console.print(f"database at revision {asyncio.run(run())}")


@admin_app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Email address.")],
    password: Annotated[
        str, typer.Option(help="Password (8+ characters).", prompt=True, hide_input=True)
    ],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    platform_admin: Annotated[bool, typer.Option("--platform-admin")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create an account (with its personal team), optionally a platform admin."""
    from hangar.core.auth.service import AuthService
    from hangar.core.errors import DomainError
    from hangar.core.platform import Platform
    from hangar.server.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)

    async def run() -> str:
        platform = Platform(settings)
        await platform.start()
        try:
            async with platform.db.session() as session:
                auth = AuthService(session, platform.hasher, platform.user_tokens)
                signed = await auth.signup(email, password, name or email.split("@")[0])
                signed.user.is_platform_admin = platform_admin
                await checkpoint(session)
                return signed.user.id
        finally:
            await platform.stop()

    try:
        user_id = asyncio.run(run())
    except DomainError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from exc
    role = " (platform admin)" if platform_admin else ""
    console.print(f"created user {user_id}{role}")


def _run_core(data_dir: Path | None, work: Any) -> Any:
    """Run `work(platform, session)` against the configured database and commit."""
    from hangar.core.errors import DomainError
    from hangar.core.platform import Platform
    from hangar.server.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)

    async def run() -> Any:
        platform = Platform(settings)
        await platform.start()
        try:
            async with platform.db.session() as session:
                result = await work(platform, session)
                await checkpoint(session)
                return result
        finally:
            await platform.stop()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from exc


TeamOption = Annotated[str, typer.Option("--team", help="Team (organization) id.")]


@admin_app.command("set-quota")
def set_quota(
    team: TeamOption,
    vcpu: Annotated[int | None, typer.Option(min=0, help="vCPUs of live capsules.")] = None,
    memory_mib: Annotated[int | None, typer.Option(min=0, help="MiB of memory.")] = None,
    disk_gib: Annotated[int | None, typer.Option(min=0, help="GiB of capsule disk.")] = None,
    snapshots: Annotated[int | None, typer.Option(min=0, help="Snapshots kept.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Give a team its own limits; those not given keep their current value."""
    from hangar.core.quotas.service import QuotaService

    async def work(platform: Any, session: Any) -> Any:
        quotas = QuotaService(session, platform.settings.quotas)
        return await quotas.set_limits(
            team, vcpu=vcpu, memory_mib=memory_mib, disk_gib=disk_gib, snapshot_count=snapshots
        )

    limits = _run_core(data_dir, work)
    console.print(
        f"team {team}: vcpu={limits.vcpu} memory_mib={limits.memory_mib} "
        f"disk_gib={limits.disk_gib} snapshots={limits.snapshot_count}"
    )


@admin_app.command("show-quota")
def show_quota(team: TeamOption, data_dir: DataDir = None) -> None:
    """Print a team's limits and usage as JSON."""
    import dataclasses
    import json

    from hangar.core.quotas.service import QuotaService

    async def work(platform: Any, session: Any) -> Any:
        quotas = QuotaService(session, platform.settings.quotas)
        await quotas.require_team(team)
        return await quotas.report(team)

    report = _run_core(data_dir, work)
    typer.echo(json.dumps({"team_id": team, **dataclasses.asdict(report)}))


@app.command()
def agent(
    data_dir: Annotated[
        Path | None, typer.Option(help="Agent state (default ~/.local/share/hangar/agent).")
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(help="`unix:/path` or `host:port` (default: a socket in data dir)."),
    ] = None,
    runtime: Annotated[str | None, typer.Option(help="Runtime: jail.")] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Join this control plane (its main URL) over an uplink it dials."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="One-time registration token (first start; credentials are kept)."),
    ] = None,
) -> None:
    """Run a host agent; its sandboxes keep running when it stops."""
    from hangar.agent.enroll import EnrollError
    from hangar.agent.main import run
    from hangar.agent.settings import AgentSettings
    from hangar.web.logging import configure_logging

    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if listen is not None:
        overrides["listen"] = listen
    if runtime is not None:
        overrides["runtime"] = runtime
    if server is not None:
        overrides["server"] = server
    if token is not None:
        overrides["registration_token"] = token
    settings = AgentSettings(**overrides)  # type: ignore[arg-type]
    configure_logging()
    if ":" in settings.listen and not settings.listen.startswith("unix:") and not settings.token:
        raise typer.BadParameter("a TCP listener needs HANGAR_AGENT_TOKEN", param_hint="--listen")
    console.print(f"[bold]Hangar agent[/] {__version__} on {settings.address()}")
    if settings.server:
        console.print(f"joining {settings.server}")
    try:
        run(settings)
    except EnrollError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc


AgentDir = Annotated[
    Path | None,
    typer.Option("--agent-dir", help="The agent's data directory (default as `hangar agent`)."),
]


def _template_store(agent_dir: Path | None) -> Any:
    from hangar.agent.jail_setup import build_jail
    from hangar.agent.settings import AgentSettings

    settings = AgentSettings(**({"data_dir": agent_dir} if agent_dir else {}))  # type: ignore[arg-type]
    return build_jail(settings)[1].store


@template_app.command("build")
def template_build(
    name: Annotated[str, typer.Argument(help="Base template to build.")] = "minimal",
    force: Annotated[bool, typer.Option(help="Rebuild even when present.")] = False,
    agent_dir: AgentDir = None,
) -> None:
    """Build a base template ahead of its first use (debootstrap; minutes, once)."""
    rootfs = _template_store(agent_dir).build(name, force=force)
    console.print(f"built [bold]{name}[/] at {rootfs}")


@template_app.command("import")
def template_import(
    name: Annotated[str, typer.Argument(help="Name of the new base template.")],
    tarball: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Rootfs tarball.")],
    agent_dir: AgentDir = None,
    nested_userns: Annotated[
        bool,
        typer.Option(
            "--nested-userns",
            help="Let its sandboxes create user namespaces (rootless containers inside).",
        ),
    ] = False,
) -> None:
    """Import a root filesystem tarball as a named base template."""
    info = _template_store(agent_dir).import_tarball(name, tarball, nested_userns=nested_userns)
    console.print(f"imported [bold]{info.name}[/] at {info.rootfs}")


@template_app.command("list")
def template_list(agent_dir: AgentDir = None) -> None:
    """Templates on this host."""
    import time

    store = _template_store(agent_dir)
    for info in store.list():
        console.print(f"{info.name}\t{info.type.value}\t{info.rootfs}")
    for name, started_at, step in store.building():  # a build under way, by anyone
        console.print(f"{name}\tbuilding\t{step}, started {int(time.time() - started_at)} s ago")


def _core_id(prefix: str, value: str) -> str:
    """A core UUID from itself or from its Wrenn id (`host-...`, `team-...`)."""
    import uuid

    from hangar.faces.wrenn import ids

    with contextlib.suppress(ValueError):
        return str(uuid.UUID(value))
    core = ids.decode(prefix, value)
    if not core:
        raise typer.BadParameter(f"not a {prefix} id: {value!r}")
    return core


def _host_admin(data_dir: Path | None, action: Any) -> None:
    """Run `action(session)` on the control plane's database and commit it."""
    from hangar.core.db import Database
    from hangar.core.errors import DomainError
    from hangar.server.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)

    async def run() -> None:
        db = Database(settings.resolved_database_url())
        try:
            async with db.session() as session:
                await action(session)
                await checkpoint(session)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except DomainError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from exc


HostArg = Annotated[str, typer.Argument(help="Host id (UUID or Wrenn `host-...`).")]
TeamArg = Annotated[str, typer.Argument(help="Team id (UUID or Wrenn `team-...`).")]


def _drain(host_id: str, draining: bool, data_dir: Path | None) -> None:
    from hangar.core.hosts.admin import set_draining

    core_id = _core_id("host", host_id)
    _host_admin(data_dir, lambda session: set_draining(session, core_id, draining))
    console.print(f"host {host_id} {'draining' if draining else 'back in service'}")


def _pin(team_id: str, byoc_only: bool, data_dir: Path | None) -> None:
    from hangar.core.hosts.admin import set_byoc_only

    core_id = _core_id("team", team_id)
    _host_admin(data_dir, lambda session: set_byoc_only(session, core_id, byoc_only))
    console.print(f"team {team_id} {'pinned to its BYOC hosts' if byoc_only else 'unpinned'}")


@host_app.command("drain")
def host_drain(host_id: HostArg, data_dir: DataDir = None) -> None:
    """Drain a host: no new capsules are placed on it; running ones keep running."""
    _drain(host_id, True, data_dir)


@host_app.command("undrain")
def host_undrain(host_id: HostArg, data_dir: DataDir = None) -> None:
    """Put a drained host back in service."""
    _drain(host_id, False, data_dir)


@host_app.command("pin")
def host_pin(team_id: TeamArg, data_dir: DataDir = None) -> None:
    """Pin a team's capsules to its own BYOC hosts (never the shared regular ones)."""
    _pin(team_id, True, data_dir)


@host_app.command("unpin")
def host_unpin(team_id: TeamArg, data_dir: DataDir = None) -> None:
    """Let a pinned team's capsules use regular hosts again."""
    _pin(team_id, False, data_dir)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `hangar` script."""
    app()
