"""Flask CLI commands (contract (docs/contract.md) section 3): demo, process, user, worker, scheduler,
plus ``run-all``, the foreground launcher behind ``make run``."""
import json
import os

import click
from flask import current_app
from flask.cli import AppGroup

from portal import accounts
from portal.errors import WorkflowError
from portal.infra.extensions import db
from portal.models.users import ROLES

process_cli = AppGroup("process", help="Process definitions.")
user_cli = AppGroup("user", help="Users and API tokens.")


def _fail(exc):
    detail = getattr(exc, "errors", None)
    message = exc.message if isinstance(exc, WorkflowError) else str(exc)
    if detail:
        message += "\n" + "\n".join(f"  {k}: {v}" for k, v in detail.items())
    raise click.ClickException(message)


@process_cli.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def process_load(path):
    """Load a process file, JSON or BPMN 2.0 (a changed one becomes a new version)."""
    from portal.workflow.process_files import load_process_report
    try:
        with open(path, "rb") as fh:
            content = fh.read()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot be read ({exc})")
    try:
        report = load_process_report(path, content)
        db.session.commit()
    except WorkflowError as exc:
        db.session.rollback()
        _fail(exc)
    state = "loaded" if report.created else "unchanged"
    click.echo(f"{report.definition.key} version {report.definition.version} {state}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}")


@user_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="user", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--workflow-roles", default="", help="Space separated, e.g. 'finance'.")
def user_create(name, role, password, workflow_roles):
    """Create a user."""
    try:
        user = accounts.create_user(name, password, role, workflow_roles)
        db.session.commit()
    except WorkflowError as exc:
        db.session.rollback()
        _fail(exc)
    click.echo(f"created {user.username} ({user.role})")


@user_cli.command("token")
@click.argument("name")
@click.option("--name", "token_name", default="", help="What the token is for, e.g. 'nightly import'.")
@click.option("--expires-days", type=int, default=None,
              help="The token stops working after this many days (default: never).")
def user_token(name, token_name, expires_days):
    """Print a new API token for NAME (only its hash is stored)."""
    try:
        token = accounts.issue_token(accounts.require_user(name), token_name, expires_days)
        db.session.commit()
    except WorkflowError as exc:
        db.session.rollback()
        _fail(exc)
    click.echo(token)


def _when(value):
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@user_cli.command("tokens")
@click.argument("name")
def user_tokens(name):
    """List NAME's API tokens: id, status, name, created, expires, last used (UTC)."""
    try:
        tokens = accounts.list_tokens(accounts.require_user(name))
    except WorkflowError as exc:
        _fail(exc)
    if not tokens:
        click.echo(f"{name} has no API tokens")
        return
    click.echo("id\tstatus\tname\tcreated\texpires\tlast used")
    for token in tokens:
        click.echo("\t".join([str(token.id), token.status(), token.name or "-",
                              _when(token.created_at), _when(token.expires_at),
                              _when(token.last_used_at)]))


@user_cli.command("revoke-token")
@click.argument("token_id", type=int)
def user_revoke_token(token_id):
    """Revoke one API token by its id (see ``user tokens NAME``); it stays revoked."""
    try:
        token = accounts.revoke_token(token_id)
        db.session.commit()
    except WorkflowError as exc:
        db.session.rollback()
        _fail(exc)
    click.echo(f"token {token.id} of {token.user.username} revoked")


def _set_disabled(name, disabled):
    try:
        accounts.set_disabled(accounts.require_user(name), disabled)
        db.session.commit()
    except WorkflowError as exc:
        _fail(exc)
    click.echo(f"{name} {'disabled' if disabled else 'enabled'}")


@user_cli.command("disable")
@click.argument("name")
def user_disable(name):
    _set_disabled(name, True)


@user_cli.command("enable")
@click.argument("name")
def user_enable(name):
    _set_disabled(name, False)


@click.command("demo")
def demo_command():
    """Demo users, process definitions and pending tasks (idempotent)."""
    from portal.demo import DEMO_PASSWORD, DEMO_USERS, load_demo
    summary = load_demo()
    db.session.commit()
    click.echo(f"demo: {summary['users']} users and {summary['tasks']} tasks created")
    click.echo("demo logins (password %s): %s" % (
        DEMO_PASSWORD, ", ".join(f"{name} ({role})" for name, role, *_ in DEMO_USERS)))


def _after_fork_dispose():
    """Forked work-horses must not share the parent's database connections."""
    engine = db.engine
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))


def _prepare_work_horses():
    """Do once in the worker what every forked work-horse would otherwise
    redo per job: import the job modules, configure the ORM mappers, read the
    process versions with running instances and parse their BPMN files (a
    horse's first decision would otherwise spend most of half a second parsing)."""
    from sqlalchemy.orm import configure_mappers
    import portal.jobs  # noqa: F401 - every job module
    from portal.models import Instance, ProcessDefinition
    from portal.workflow.engine import runtime, versions
    configure_mappers()
    running = (db.select(ProcessDefinition.id, ProcessDefinition.digest, ProcessDefinition.created_at)
               .where(ProcessDefinition.bpmn.is_not(None))
               .where(ProcessDefinition.id.in_(db.select(Instance.process_id)
                                                .where(Instance.status == "running").distinct()))
               .order_by(ProcessDefinition.id.desc()).limit(runtime.specs.cache_info().maxsize))
    for key in db.session.execute(running).all():
        runtime.specs(versions.version_shape(tuple(key)).bpmn)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--name", default=None)
@click.option("--queue", "queue", type=click.Choice(["all", "batches", "deliveries"]),
              default="all", show_default=True,
              help="batches: batch work and recovery only; deliveries: notice deliveries only; "
                   "all: both, batch work first.")
def worker_command(burst, name, queue):
    """One RQ worker on the portal's queues, inside the app context."""
    from rq import Worker
    from portal.infra.queueing import get_redis, worker_queues
    from portal.notices.texts import portal_url_warning
    warning = portal_url_warning()
    if warning:  # the links of the e-mails this worker sends
        current_app.logger.warning(warning)
    _prepare_work_horses()
    _after_fork_dispose()
    db.session.remove()
    worker = Worker(worker_queues(queue), connection=get_redis(), name=name)
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


@click.command("scheduler")
@click.option("--burst", is_flag=True, help="Enqueue what is due once, then stop.")
def scheduler_command(burst):
    """rq-scheduler with the portal's periodic jobs registered."""
    from portal.infra.queueing import get_queue, get_redis
    from portal.jobs.periodic import periodic_jobs
    from portal.jobs.scheduler import PortalScheduler
    config = current_app.config
    # Polls at least as often as the most frequent periodic job runs.
    intervals = [interval for _job_id, _job, interval in periodic_jobs(config)]
    scheduler = PortalScheduler(queue=get_queue(), connection=get_redis(),
                                interval=min(10, *intervals), config=config)
    scheduler.run(burst=burst)


def register_cli(app):
    from portal.launcher import run_all_command
    app.cli.add_command(process_cli)
    app.cli.add_command(user_cli)
    app.cli.add_command(demo_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(run_all_command)
