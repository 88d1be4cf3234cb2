"""The spawners of one master: which backend a configuration gets, and its preload templates."""

from __future__ import annotations

import anyio.abc
from structlog.typing import FilteringBoundLogger

from .._config.options import MasterConfig
from .._env import template_env
from .base import Spawner, SpawnRequest, generation_key
from .exec import ExecSpawner
from .preload import ForkedProcess, Template, TemplateError


class _TemplateSpawner:
    """The spawner of one configuration in preload mode."""

    def __init__(self, spawners: Spawners, config: MasterConfig) -> None:
        self._spawners = spawners
        self._config = config

    async def spawn(self, request: SpawnRequest) -> ForkedProcess:
        """Fork the worker from the template of its configuration (started on first use)."""
        template = self._spawners.template_for(self._config, request)
        return await template.spawn(request)


def _is_in(config: MasterConfig, configs: list[MasterConfig]) -> bool:
    return any(config is other for other in configs)


class Spawners:
    """Choose a spawner per configuration; own the preload templates of one master.

    ``config`` is the master's configuration, until the master says another one is (`use`):
    a template of another one is closed as soon as it has no worker left (see `retire_unused`).

    A template serves the configuration objects it was started or reused for, by
    identity, and a new object equal to them but for the count (after `scale`). A
    configuration marked `fresh` (a reload's) gets a new template.
    """

    def __init__(self, log: FilteringBoundLogger, config: MasterConfig) -> None:
        self._log = log
        self._current = config
        self._exec = ExecSpawner()
        self._templates: list[Template] = []
        self._fresh: list[MasterConfig] = []
        self._tg: anyio.abc.TaskGroup | None = None

    def use(self, config: MasterConfig) -> None:
        """Make ``config`` the master's configuration; close the idle templates of others."""
        self._current = config
        self.retire_unused()

    def open(self, tg: anyio.abc.TaskGroup) -> None:
        """Run templates' tasks in ``tg`` (the master's task group)."""
        self._tg = tg

    def for_config(self, config: MasterConfig) -> Spawner:
        """Return the spawner for workers of ``config``."""
        if not config.preload:
            return self._exec
        return _TemplateSpawner(self, config)

    def fresh(self, config: MasterConfig) -> None:
        """Give the workers of ``config`` (a reload's) a new template, started on first use."""
        self._fresh = [c for c in self._fresh if _is_in(c, [self._current])] + [config]

    def _find(self, config: MasterConfig) -> Template | None:
        live = [t for t in self._templates if not t.closed]
        for template in live:
            if _is_in(config, template.served):
                return template
        if _is_in(config, self._fresh):
            return None
        key = generation_key(config)
        for template in reversed(live):
            if template.key == key:
                template.served.append(config)
                return template
        return None

    def template_for(self, config: MasterConfig, request: SpawnRequest) -> Template:
        """Return the live template serving ``config``, starting one if needed."""
        found = self._find(config)
        if found is not None:
            return found
        if self._tg is None:
            raise TemplateError("preload templates need the master's context: 'async with master:'")
        template = Template(config, template_env(request.env), self._log, self.retire_unused)
        self._templates.append(template)
        self._tg.start_soon(template.run, self._template_exited, name="drover-py preload template")
        return template

    def _template_exited(self, template: Template) -> None:
        if template in self._templates:
            self._templates.remove(template)

    def retire_unused(self) -> None:
        """Close every idle template that does not serve the master's current configuration."""
        keep = self._find(self._current)
        for template in list(self._templates):
            if template is not keep and template.idle():
                self._log.debug("retiring preload template", pid=template.pid)
                template.close()

    def close(self) -> None:
        """Close every template (their workers must be gone or going)."""
        for template in list(self._templates):
            template.close()
