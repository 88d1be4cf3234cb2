"""Who workers run as: the ``user`` and ``group`` options, resolved when the master is created.

Both spawn modes apply a `RunAs` the same way, in the child, before the script runs:
supplementary groups, then gid, then uid (exec mode through `anyio.open_process`,
preload mode in the template's forked child).
"""

from __future__ import annotations

import grp
import os
import pwd

import attrs

from .._exceptions import ConfigError


@attrs.frozen(kw_only=True)
class RunAs:
    """The credentials a worker switches to before its script runs."""

    #: User id, or None to keep the master's (only ``group`` was given).
    uid: int | None
    #: Group id (``group``, else the user's primary group).
    gid: int
    #: Supplementary groups: the user's (as ``initgroups`` gives them), else just ``gid``.
    groups: tuple[int, ...]
    #: The user's name and home directory, when it has a passwd entry.
    name: str | None = None
    home: str | None = None

    def env(self) -> dict[str, str]:
        """Return HOME, USER and LOGNAME of the target user (empty without a passwd entry)."""
        if self.uid is None or self.name is None:
            return {}
        env = {"USER": self.name, "LOGNAME": self.name}
        if self.home:
            env["HOME"] = self.home
        return env


def _lookup(option: str, value: object) -> tuple[int, str | None]:
    """Return (id, name or None) for a name or numeric id; a name of digits may be an id."""
    finder = pwd.getpwnam if option == "user" else grp.getgrnam
    if isinstance(value, str) and value:
        try:
            entry = finder(value)
        except KeyError:
            if not value.isdigit():
                raise ConfigError(option, f"unknown {option} {value!r}") from None
            return _lookup(option, int(value))
        return (entry[2], value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        try:
            entry = pwd.getpwuid(value) if option == "user" else grp.getgrgid(value)
        except KeyError:
            return (value, None)
        return (value, entry[0])
    raise ConfigError(option, f"expected a {option} name or a numeric id >= 0, got {value!r}")


def resolve_run_as(user: object, group: object, *, euid: int | None = None, egid: int | None = None) -> RunAs | None:
    """Resolve the ``user`` and ``group`` options; return None if workers keep the master's ids.

    ``euid``/``egid`` default to the master's effective ids. Raise `ConfigError` for an
    unknown name, a numeric uid without passwd entry and no ``group``, and a change of
    ids when the master does not run as root.
    """
    if user is None and group is None:
        return None
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    uid = gid = None
    name = home = None
    if user is not None:
        uid, name = _lookup("user", user)
        if name is not None:
            entry = pwd.getpwnam(name)
            gid, home = entry.pw_gid, entry.pw_dir
    if group is not None:
        gid, _ = _lookup("group", group)
    if gid is None:
        raise ConfigError("user", f"uid {uid} has no passwd entry, so no primary group: give the group option too")
    if euid != 0:
        if uid is not None and uid != euid:
            raise ConfigError(
                "user",
                f"dropping privileges to user {_show(name, uid)} needs the master to run as root (it runs as uid {euid})",
            )
        if gid != egid:
            option = "group" if group is not None else "user"
            raise ConfigError(
                option, f"switching workers to gid {gid} needs the master to run as root (it runs as gid {egid})"
            )
        return None  # the master's own ids: nothing to change, and no right to setgroups()
    groups = (gid,) if name is None or user is None else tuple(os.getgrouplist(name, gid))
    return RunAs(uid=uid, gid=gid, groups=groups, name=name, home=home)


def _show(name: str | None, number: int) -> str:
    return f"{number}" if name is None else f"{name!r} (uid {number})"
