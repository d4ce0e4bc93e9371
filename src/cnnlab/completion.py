"""Shell completion, written from the command line's own parser: ``cnnlab completion bash``
prints a script for bash (and zsh, through bashcompinit) that completes commands, options,
model names, bundled recipes and data sources."""

from __future__ import annotations

import argparse
import shlex

VALUES = {"--model": "models", "--config": "recipes", "--data": "sources"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for action in parser._actions for o in action.option_strings if o.startswith("--"))


def bash_script(parser: argparse.ArgumentParser, models: list[str], recipes: list[str],
                sources: list[str]) -> str:
    """A bash completion function for ``parser``'s commands (one level of sub-commands, as
    ``cnnlab data info``)."""
    words = {"models": models, "recipes": recipes, "sources": [f"{s}:" for s in sources]}
    cases = []
    for name, sub in _subparsers(parser).items():
        nested = _subparsers(sub)
        if nested:
            inner = "\n".join(f"                {n}) opts={shlex.quote(' '.join(_options(p)))} ;;"
                              for n, p in nested.items())
            cases.append(f"""        {name})
            if [ "$COMP_CWORD" -eq 2 ]; then opts={shlex.quote(' '.join(nested))}; else
            case "${{COMP_WORDS[2]}}" in
{inner}
            esac; fi ;;""")
        else:
            cases.append(f"        {name}) opts={shlex.quote(' '.join(_options(sub)))} ;;")
    files = ' $(compgen -f -- "$cur")'
    values = "\n".join(f"        {flag}) COMPREPLY=($(compgen -W {shlex.quote(' '.join(words[kind]))} -- \"$cur\")"
                       f"{files if kind != 'models' else ''}); return ;;"
                       for flag, kind in VALUES.items())
    commands = " ".join(_subparsers(parser))
    return f"""# cnnlab completion for bash (and zsh with: autoload bashcompinit && bashcompinit)
# eval "$(cnnlab completion bash)"   or   cnnlab completion bash > ~/.local/share/bash-completion/completions/cnnlab
_cnnlab() {{
    local cur prev opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    case "$prev" in
{values}
    esac
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{commands} --help --version" -- "$cur")); return
    fi
    case "${{COMP_WORDS[1]}}" in
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else COMPREPLY=($(compgen -f -- "$cur")); fi
}}
complete -o filenames -F _cnnlab cnnlab
"""
