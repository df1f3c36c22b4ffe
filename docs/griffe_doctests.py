"""A griffe extension for the API reference: doctests in docstrings become ``pycon`` code blocks.

The library's docstrings keep plain doctests (``>>>`` lines and their output, run by pytest);
without this, Markdown would read them as nested block quotes and their output as links.
"""
import griffe


def fence_doctests(text: str) -> str:
    lines, out, in_block = text.split("\n"), [], False
    for line in lines:
        stripped = line.strip()
        if not in_block and stripped.startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            out += ["", indent + "```pycon"]
            in_block = True
        elif in_block and not stripped:
            out += [indent + "```", ""]
            in_block = False
            continue
        out.append(line)
    if in_block:
        out.append(indent + "```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
