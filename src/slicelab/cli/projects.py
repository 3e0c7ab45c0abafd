"""``slicelab project``: groups of members led by a PI, under which slices are made."""

from __future__ import annotations

from typing import Annotated

import typer

from slicelab.sdk import Project

from . import output, session

__all__ = ["app"]

app = typer.Typer(help="Create and join projects.", no_args_is_help=True)
ProjectName = Annotated[str, typer.Argument(metavar="NAME", help="The project's name.")]
MemberName = Annotated[str, typer.Argument(metavar="MEMBER", help="A member's name.")]


def _row(project: Project) -> list[str]:
    leads = [m.name for m in project.members if m.role in ("pi", "lead", "owner")]
    return [
        project.name,
        ", ".join(leads) or "-",
        str(len(project.members)),
        output.day(project.created),
        project.description,
    ]


PROJECTS = output.Listing("Projects", ["NAME", "LED BY", "MEMBERS", "CREATED", "DESCRIPTION"], _row)


def _fields(project: Project) -> list[tuple[str, str]]:
    members = ", ".join(f"{m.name} ({m.role})" for m in project.members)
    return [
        ("name", project.name),
        ("description", project.description or "-"),
        ("created", output.when(project.created)),
        ("members", members or "-"),
        ("invited", ", ".join(project.invitations) or "-"),
        ("asking to join", ", ".join(project.requests) or "-"),
    ]


@app.command("create")
def create(
    name: ProjectName,
    description: Annotated[str, typer.Option(help="What the project is about.")] = "",
) -> None:
    """Create a project and lead it (needs the right to lead projects)."""
    with session.connect() as sl:
        project = sl.create_project(name, description=description)
    output.say(f"created project [bold]{project.name}[/]")


@app.command("list")
def list_projects(as_json: output.JsonFlag = False) -> None:
    """List the projects you can see."""
    with session.connect() as sl:
        PROJECTS.show(sl.projects(), as_json=as_json)


@app.command("show")
def show(name: ProjectName, as_json: output.JsonFlag = False) -> None:
    """Show a project, its members and pending invitations and requests."""
    with session.connect() as sl:
        project = sl.project(name)
    output.detail(project, as_json=as_json, title=f"project {project.name}", fields=_fields)


@app.command("invite")
def invite(name: ProjectName, member: MemberName) -> None:
    """Invite a member into your project; they accept with 'slicelab project join'."""
    with session.connect() as sl:
        sl.invite(name, member)
    output.say(f"invited {member} to {name}; they join with: slicelab project join {name}")


@app.command("join")
def join(name: ProjectName) -> None:
    """Join a project you were invited to, or ask its PI to let you in."""
    with session.connect() as sl:
        result = sl.join(name)
    if result.status == "joined":
        output.say(f"joined project {name}")
    else:
        output.say(f"asked to join {name}; a PI of the project must approve ({result.status})")


@app.command("approve")
def approve(name: ProjectName, member: MemberName) -> None:
    """Let a member who asked to join into your project."""
    with session.connect() as sl:
        sl.approve(name, member)
    output.say(f"approved {member} into {name}")
