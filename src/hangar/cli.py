"""The `hangar` command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hangar import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hangar compute platform.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
admin_app = typer.Typer(no_args_is_help=True, help="Administration.")
template_app = typer.Typer(no_args_is_help=True, help="Root filesystem templates of this host.")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(template_app, name="template")
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
        companions.append(agent_server(agent_settings, build_agent(agent_settings)))
        settings.agents["local"] = agent_settings.address()
    asyncio.run(run_serve(settings, companions))


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply database migrations up to the newest."""
    from hangar.core.db import Database
    from hangar.core.db.migrate import current_revision, upgrade
    from hangar.server.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

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
                await session.commit()
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
) -> None:
    """Run a host agent; its sandboxes keep running when it stops."""
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
    settings = AgentSettings(**overrides)  # type: ignore[arg-type]
    configure_logging()
    if ":" in settings.listen and not settings.listen.startswith("unix:") and not settings.token:
        raise typer.BadParameter("a TCP listener needs HANGAR_AGENT_TOKEN", param_hint="--listen")
    console.print(f"[bold]Hangar agent[/] {__version__} on {settings.address()}")
    run(settings)


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
) -> None:
    """Import a root filesystem tarball as a named base template."""
    info = _template_store(agent_dir).import_tarball(name, tarball)
    console.print(f"imported [bold]{info.name}[/] at {info.rootfs}")


@template_app.command("list")
def template_list(agent_dir: AgentDir = None) -> None:
    """Templates on this host."""
    for info in _template_store(agent_dir).list():
        console.print(f"{info.name}\t{info.type.value}\t{info.rootfs}")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `hangar` script."""
    app()
