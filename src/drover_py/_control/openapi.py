"""The OpenAPI 3.0 document of the control API (also kept in the repository as docs/openapi.json)."""

from __future__ import annotations

from .._commands import JSON, NAME_PATTERN

_ERROR_CODES = {
    "400": "Bad arguments, bad JSON, or several masters and none named",
    "401": "Missing or wrong access key",
    "403": "Signed in by the page's session cookie, but a request that changes state lacks the X-Drover-CSRF header",
    "404": "Unknown command, route or master (GET /commands lists the commands)",
    "405": "Method not allowed on this path (see the Allow header)",
    "408": "The request did not arrive in time",
    "409": "The command does not fit the master's state (e.g. already shut down)",
    "413": "Request body too large",
    "422": "A check did not pass (the command 'test'): 'output' has its last lines",
    "500": "The command failed (e.g. an upgrade rolled back) or its handler raised",
}


def _ref(name: str) -> dict[str, JSON]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> dict[str, JSON]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, JSON]:
    responses: dict[str, JSON] = {code: _json(_ref("Error"), _ERROR_CODES[code]) for code in codes}
    responses["401"] = {
        **_json(_ref("Error"), _ERROR_CODES["401"]),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }
    return responses


_MASTER: dict[str, JSON] = {
    "name": "master",
    "in": "query",
    "required": False,
    "description": "Name of the master, needed when the process serves several (GET /masters)",
    "schema": {"type": "string"},
}
_PAGE_TYPES = ("text/javascript", "text/css", "image/svg+xml", "text/html")
_LOGIN: dict[str, JSON] = {
    "type": "object",
    "required": ["key"],
    "properties": {"key": {"type": "string", "description": "The access key (or ctl open's one-time token)"}},
}
_NAME: dict[str, JSON] = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Command name, e.g. workers, health, restart",
    "schema": {"type": "string", "pattern": NAME_PATTERN.pattern, "example": "workers"},
}


def openapi_document() -> dict[str, JSON]:
    """Return the OpenAPI 3.0 document of the control API."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "drover-py control API",
            "version": "1",
            "description": (
                "Command running drover-py masters: list workers, check health, restart, upgrade, "
                "scale, shut down, and run the application's own commands. Every response is JSON "
                "with a boolean 'ok'; a failure carries 'error', a one-line reason."
            ),
        },
        "security": [{"accessKey": []}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Probe: healthy when every slot of every master (or of ?master=) has a started worker",
                    "security": [],
                    "parameters": [_MASTER],
                    "responses": {
                        "200": _json(_ref("Health"), "Healthy"),
                        "503": _json(_ref("Health"), "Not healthy"),
                        **_errors("400", "404"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of the masters served (or of ?master=), in the text format",
                    "parameters": [_MASTER],
                    "responses": {
                        "200": {
                            "description": "The metrics (text/plain; version=0.0.4)",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors("400", "401", "404"),
                    },
                }
            },
            "/masters": {
                "get": {
                    "summary": "The masters this process serves",
                    "responses": {"200": _json(_ref("MastersReply"), "Masters by name"), **_errors("401")},
                }
            },
            "/commands": {
                "get": {
                    "summary": "Help for every command of a master",
                    "parameters": [_MASTER],
                    "responses": {"200": _json(_ref("HelpListReply"), "Every command"), **_errors("400", "401", "404")},
                }
            },
            "/commands/{name}": {
                "parameters": [_NAME, _MASTER],
                "get": {
                    "summary": "Help for one command",
                    "responses": {
                        "200": _json(_ref("HelpReply"), "The command's help"),
                        **_errors("400", "401", "404"),
                    },
                },
                "post": {
                    "summary": "Run a command",
                    "description": (
                        "Arguments by position (a JSON array, console words as strings are converted) or by "
                        "name (a JSON object); an empty body gives none. Long operations reply when done, or "
                        "after their 'timeout' argument with done=false while they go on."
                    ),
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("Arguments")}},
                    },
                    "responses": {
                        "200": _json(_ref("CommandReply"), "The command's result"),
                        **_errors("400", "401", "403", "404", "409", "413", "422", "500"),
                    },
                },
            },
            "/": {
                "get": {
                    "summary": "The status page (HTML; it holds no data, so no key is needed)",
                    "security": [],
                    "responses": {
                        "200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                }
            },
            "/page/{file}": {
                "get": {
                    "summary": "A file of the status page (script, style, icon)",
                    "security": [],
                    "parameters": [
                        {
                            "name": "file",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["app.js", "style.css", "icon.svg", "index.html"]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The file",
                            "content": {kind: {"schema": {"type": "string"}} for kind in _PAGE_TYPES},
                        },
                        "404": _json(_ref("Error"), "No such file"),
                    },
                }
            },
            "/login": {
                "post": {
                    "summary": "Sign a browser in: check the key, set a session cookie",
                    "description": (
                        "On success the reply sets an HttpOnly, SameSite=Strict cookie holding a random session "
                        "token (12 h). The cookie then authorizes the other routes in place of the key; a request "
                        "that changes state must also carry the X-Drover-CSRF header."
                    ),
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _LOGIN},
                            "application/x-www-form-urlencoded": {"schema": _LOGIN},
                        },
                    },
                    "responses": {
                        "200": {
                            **_json(_ref("Login"), "Signed in"),
                            "headers": {"Set-Cookie": {"schema": {"type": "string"}}},
                        },
                        **_errors("400", "401"),
                    },
                }
            },
            "/logout": {
                "post": {
                    "summary": "Sign a browser out: end its session, delete the cookie (needs X-Drover-CSRF)",
                    "security": [],
                    "parameters": [
                        {"name": "X-Drover-CSRF", "in": "header", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json(_ref("Login"), "Signed out"),
                        "403": _json(_ref("Error"), "The X-Drover-CSRF header is missing"),
                    },
                }
            },
            "/events": {
                "get": {
                    "summary": "Server-sent events of a master's worker events",
                    "description": "Each event: 'event: NAME' and 'data: {event, master, args}'. Never ends by itself.",
                    "parameters": [_MASTER],
                    "x-streaming": True,
                    "responses": {
                        "200": {
                            "description": "An endless event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors("400", "401", "404"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "accessKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "The access key; required on TCP, optional on the Unix socket. A browser signed in with "
                        "POST /login sends its session cookie instead."
                    ),
                }
            },
            "schemas": {
                "Health": {
                    "type": "object",
                    "required": ["healthy"],
                    "properties": {"healthy": {"type": "boolean"}},
                    "additionalProperties": False,
                },
                "Login": {
                    "type": "object",
                    "required": ["ok"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "expires_in": {"type": "number", "description": "Seconds the session lasts"},
                        "message": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["ok", "error"],
                    "properties": {
                        "ok": {"type": "boolean", "enum": [False]},
                        "error": {"type": "string"},
                        "command": {"type": "string"},
                        "stderr_tail": {
                            "type": "string",
                            "description": "a worker that failed to start: its last lines of stderr",
                        },
                        "output": {"type": "string", "description": "a check that failed: its last lines of output"},
                        "report": {
                            "type": "object",
                            "description": "a reload rolled back: what had switched (as a reload's reply fields)",
                        },
                    },
                },
                "Arguments": {
                    "oneOf": [
                        {"type": "array", "items": {}},
                        {"type": "object", "additionalProperties": True},
                    ]
                },
                "Param": {
                    "type": "object",
                    "required": ["name", "type", "required"],
                    "properties": {
                        "name": {"type": "string"},
                        "type": {"type": "string", "enum": ["string", "integer", "number", "boolean"]},
                        "required": {"type": "boolean"},
                        "default": {"nullable": True},
                    },
                },
                "Help": {
                    "type": "object",
                    "required": ["name", "usage", "summary", "help", "params"],
                    "properties": {
                        "name": {"type": "string"},
                        "usage": {"type": "string"},
                        "summary": {"type": "string"},
                        "help": {"type": "string"},
                        "params": {"type": "array", "items": _ref("Param")},
                    },
                },
                "HelpReply": {
                    "type": "object",
                    "required": ["ok", "master", "result"],
                    "properties": {"ok": {"type": "boolean"}, "master": {"type": "string"}, "result": _ref("Help")},
                },
                "HelpListReply": {
                    "type": "object",
                    "required": ["ok", "master", "result"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "master": {"type": "string"},
                        "result": {"type": "array", "items": _ref("Help")},
                    },
                },
                "CommandReply": {
                    "type": "object",
                    "required": ["ok", "command", "master", "result"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "command": {"type": "string"},
                        "master": {
                            "type": "string",
                            "nullable": True,
                            "description": "The master it ran for; null for a command of the whole process",
                        },
                        "result": {"description": "The command's JSON result", "nullable": True},
                    },
                },
                "MastersReply": {
                    "type": "object",
                    "required": ["ok", "result"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "result": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "script", "count", "started"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "script": {"type": "string"},
                                    "count": {"type": "integer"},
                                    "started": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
            },
        },
    }


if __name__ == "__main__":  # regenerate the repository's copy: python -m drover_py._control.openapi > docs/openapi.json
    import json

    print(json.dumps(openapi_document(), indent=2))
