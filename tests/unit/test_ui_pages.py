"""The pages carry out an action by calling :mod:`ui.actions`, as the API does, never the
API's routes: nothing in :mod:`ui.pages` reads a JSON answer back."""

from __future__ import annotations

import ast
import inspect

import pytest

from ui import actions, pages

TREE = ast.parse(inspect.getsource(pages))

FORMS = {"judgment_form": "answer", "cancel_form": "cancel", "restart_form": "restart",
         "promote_form": "promote", "rollback_form": "roll_back"}
"""Each page's form handler and the action it carries out."""


def _imported_modules(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _function(name: str) -> ast.AsyncFunctionDef | ast.FunctionDef:
    return next(node for node in ast.walk(TREE)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == name)


def test_the_pages_import_nothing_of_the_api():
    assert not {m for m in _imported_modules(TREE) if m == "ui.api" or
                m.startswith("ui.api.")}


def test_no_page_parses_a_json_answer_or_reads_a_responses_body():
    parsed = [node.lineno for node in ast.walk(TREE)
              if isinstance(node, ast.Attribute) and node.attr in {"loads", "body"}]
    assert parsed == [], f"ui/pages.py reads an answer back on lines {parsed}"


@pytest.mark.parametrize(("form", "action"), FORMS.items())
def test_each_form_calls_its_action_directly(form: str, action: str):
    called = {node.func.attr for node in ast.walk(_function(form))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "actions"}
    assert called == {action}
    assert inspect.iscoroutinefunction(getattr(actions, action))
