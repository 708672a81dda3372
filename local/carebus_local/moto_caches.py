"""What moto works out again on every request although the answer never changes, worked out once instead.
Applied in moto's own process (carebus_local.moto_process); behaviour is unchanged, only the cost.

Measured on the offline stack under load (profiles of moto's process), the two largest shares of moto's own
CPU after DynamoDB:
- Step Functions parses a state machine's definition and its intrinsic functions (ANTLR grammars) at every
  StartExecution: the parse tree of each is kept, and each execution still gets components of its own.
- JSONPath expressions (EventBridge input transformers, Step Functions paths) are compiled at every use,
  and jsonpath_ng builds a whole new LALR parser for each: a compiled expression is immutable, and kept.
"""

import functools
import threading
from collections.abc import Callable
from typing import Any

_applied = False
_apply_lock = threading.Lock()
_MAX_EXPRESSIONS = 4096


def make_moto_cheaper() -> None:
    """Patch moto once per process (idempotent)."""
    global _applied
    with _apply_lock:
        if _applied:
            return
        _parse_each_state_machine_once()
        _compile_each_json_path_once()
        _applied = True


def _parse_each_state_machine_once() -> None:
    from moto.stepfunctions.parser.asl.parse import preprocessor
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.intrinsic import preprocessor as intrinsic_preprocessor
    from moto.stepfunctions.parser.asl.parse.intrinsic.intrinsic_parser import IntrinsicParser

    _keep_parse_trees(AmazonStateLanguageParser, preprocessor.Preprocessor)
    # The intrinsic functions (States.Format...) of a definition are parsed anew at each execution too.
    _keep_parse_trees(IntrinsicParser, intrinsic_preprocessor.Preprocessor)


def _keep_parse_trees(parser: Any, preprocessor: Any) -> None:
    """parser.parse(source) -> (components, tree), with the tree of each source kept."""
    parse = parser.parse
    trees: dict[str, Any] = {}

    def parse_once(source: str) -> tuple[Any, Any]:
        tree = trees.get(source)
        if tree is None:
            # A source that does not parse raises here, every time, as before.
            components, tree = parse(source)
            trees[source] = tree
            return components, tree
        # Fresh components for every caller: they are what evaluation may hold state in; the tree is not.
        return preprocessor().visit(tree), tree

    parser.parse = staticmethod(parse_once)


def _compiled_once(compile_path: Callable[..., Any]) -> Callable[..., Any]:
    cached = functools.lru_cache(maxsize=_MAX_EXPRESSIONS)(compile_path)

    @functools.wraps(compile_path)
    def compile_once(path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(path, str):
            return compile_path(path, *args, **kwargs)
        return cached(path)

    return compile_once


def _compile_each_json_path_once() -> None:
    import jsonpath_ng
    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    # moto's EventBridge imports jsonpath_ng.ext.parse at each call; Step Functions imported it at load.
    jsonpath_ng.ext.parse = _compiled_once(jsonpath_ng.ext.parse)
    json_path.parse = jsonpath_ng.ext.parse
    jsonpath_ng.parse = _compiled_once(jsonpath_ng.parse)
    result_path.parse = jsonpath_ng.parse
