"""
The README's code is the examples' code: each example in C{examples/}, with
the README's values written in where the example reads an argument, is the
README's code block (C{tests/test_examples.py} runs the examples).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping

from twisted.trial.unittest import SynchronousTestCase

from .test_examples import EXAMPLES, README

#: A value the README writes in where an example reads an argument.
Value = str | int | None


def readmeBlock(heading: str) -> str:
    """
    The first Python code block in the README section whose heading starts
    with C{heading}.

    @param heading: the start of a C{## } heading's text.
    @return: the code, without the fences.
    """
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {heading}"))
    opening = lines.index("```python", start)
    closing = lines.index("```", opening)
    return "\n".join(lines[opening + 1 : closing]) + "\n"


class _WriteValuesIn(ast.NodeTransformer):
    """
    Turn an example's syntax tree into the README's: drop the docstring, the
    imports and assignments that read the example's arguments and, for each
    argument C{NAME}, the function C{NAMEArgument} that reads and checks it;
    write in the README's value for each argument, and drop a keyword
    argument whose value becomes L{None} (the README leaves it at its
    default).
    """

    def __init__(self, values: Mapping[str, Value]) -> None:
        self.values = values

    def _readsArguments(self, statement: ast.stmt) -> bool:
        if isinstance(statement, ast.Import):
            return all(alias.name in ("os", "sys") for alias in statement.names)
        if isinstance(statement, ast.FunctionDef):
            return statement.name in {f"{name}Argument" for name in self.values}
        if isinstance(statement, ast.Assign):
            return all(
                isinstance(target, ast.Name) and target.id in self.values
                for target in statement.targets
            )
        return isinstance(statement, ast.Expr) and isinstance(
            statement.value, ast.Constant
        )

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node.body = [s for s in node.body if not self._readsArguments(s)]
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.values:
            return ast.copy_location(ast.Constant(self.values[node.id]), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        node.keywords = [
            keyword
            for keyword in node.keywords
            if not (
                keyword.arg in self.values
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value is None
            )
        ]
        return node


def readmeForm(source: str, values: Mapping[str, Value]) -> ast.Module:
    """
    An example's code as the README gives it.

    @param source: the example's source.
    @param values: the README's value for each name that holds an argument.
    """
    tree = _WriteValuesIn(values).visit(ast.parse(source))
    assert isinstance(tree, ast.Module)
    return ast.fix_missing_locations(tree)


class ReadmeTests(SynchronousTestCase):
    """
    The README's code is the examples' code.
    """

    def assertReadmeForm(
        self, example: str, heading: str, values: Mapping[str, Value]
    ) -> None:
        source = (EXAMPLES / example).read_text(encoding="utf-8")
        readme = ast.parse(readmeBlock(heading))
        ours = readmeForm(source, values)
        if ast.dump(ours) != ast.dump(readme):
            diff = difflib.unified_diff(
                ast.unparse(readme).splitlines(),
                ast.unparse(ours).splitlines(),
                f"README.md, {heading}",
                f"examples/{example}, the README's values written in",
                lineterm="",
            )
            self.fail("\n".join(diff))

    def test_client(self) -> None:
        """
        C{examples/client.py} is the client of "The client", with the
        gateway from the command line.
        """
        self.assertReadmeForm("client.py", "The client", {"gateway": "192.168.1.1"})

    def test_echo(self) -> None:
        """
        C{examples/echo.tac} is the echo server of "Keeping ports mapped",
        with the gateway and port from the environment.
        """
        self.assertReadmeForm(
            "echo.tac", "Keeping ports mapped", {"gateway": None, "port": 8080}
        )

    def test_website(self) -> None:
        """
        C{examples/website.py} is the web site of "Reachable from outside",
        with the endpoint description from the command line.
        """
        self.assertReadmeForm(
            "website.py",
            "Reachable from outside",
            {"description": "natpmp:gateway=192.168.1.1:tcp:8080"},
        )

    def test_differenceShown(self) -> None:
        """
        A change to either side is a difference, not hidden by the values
        written in.
        """
        source = (EXAMPLES / "client.py").read_text(encoding="utf-8")
        changed = source.replace("lifetime=3600", "lifetime=7200")
        readme = ast.dump(ast.parse(readmeBlock("The client")))
        values = {"gateway": "192.168.1.1"}
        self.assertEqual(ast.dump(readmeForm(source, values)), readme)
        self.assertNotEqual(ast.dump(readmeForm(changed, values)), readme)
        self.assertNotEqual(
            ast.dump(readmeForm(source, {"gateway": "10.0.0.1"})), readme
        )
