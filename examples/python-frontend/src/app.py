"""The wbuild frontend of examples/python-frontend: the Buildfile language (`buildfile.py`)
translated to wbuild's stage-graph IR, made into a WebAssembly component by componentize-py
from `wit/` alone (see build.sh).

componentize-py calls `WitWorld().info()` and `WitWorld().translate(input)`; an error is raised
as `Err([Diagnostic, ...])`, which the component returns as the `result`'s error case.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as t

import buildfile

NAME = "buildfile-py"
VERSION = "0.1.0"


def span(line: int, text: str) -> t.Span:
    return t.Span(line=line, column=1, end_line=line, end_column=max(1, len(text)), file=None)


def diagnostic(file_name: str, line: int, column: int, message: str, text: str) -> t.Diagnostic:
    return t.Diagnostic(
        file=file_name, line=line, column=column, message=message, text=text, included_from=[]
    )


def op(step: buildfile.Step, stages: list) -> t.Op:
    k, a = step.kind, step.args
    if k == "run":
        return t.Op_Run(
            t.RunOp(
                args=a,
                extra_env=[],
                network=t.Network.NONE,
                security=t.Security.SANDBOX,
                mounts=[],
            )
        )
    if k == "copy":
        sources, from_stage, dest = a
        if from_stage is None:
            source = t.Source_Context()
        else:
            index = next((i for i, s in enumerate(stages) if s.name == from_stage.value), None)
            if index is None:
                raise buildfile.BuildfileError(
                    step.line,
                    from_stage.column,
                    f"no earlier stage is named `{from_stage.value}`",
                    from_stage.raw,
                )
            source = t.Source_Stage(index)
        return t.Op_Copy(
            t.CopyOp(
                from_=source,
                sources=[t.CopySource_Path(s) for s in sources],
                dest=dest,
                chown=None,
                chmod=None,
                link=False,
                parents=False,
                excludes=[],
                add=None,
            )
        )
    if k == "env":
        return t.Op_Env([t.KeyValue(key=a[0], value=a[1])])
    if k == "label":
        return t.Op_Label([t.KeyValue(key=a[0], value=a[1])])
    if k == "workdir":
        return t.Op_Workdir(a[0])
    if k == "user":
        return t.Op_User(a[0])
    if k == "cmd":
        return t.Op_Cmd(a)
    if k == "entrypoint":
        return t.Op_Entrypoint(a)
    if k == "expose":
        return t.Op_Expose(a)
    raise AssertionError(f"the parser made an unknown step {k}")


def translate(inp: t.Input) -> t.Translation:
    args = {kv.key: kv.value for kv in inp.build_args}
    program, unused = buildfile.parse(inp.source, args)
    if not program.stages:
        raise buildfile.BuildfileError(1, 1, "the Buildfile has no stage: add `stage NAME from BASE:`", "")
    stages = []
    for index, sd in enumerate(program.stages):
        kind, value = sd.base
        if kind == "image":
            base = t.Base_Image(t.ImageRef(reference=value, platform=None))
        elif kind == "scratch":
            base = t.Base_Scratch()
        else:
            base = t.Base_Stage(value)
        ops = [
            t.OpNode(op=op(step, program.stages[:index]), span=span(step.line, step.text), text=step.text)
            for step in sd.steps
        ]
        stages.append(
            t.Stage(name=sd.name, base=base, platform=None, ops=ops, span=span(sd.line, sd.text), text=sd.text)
        )
    wanted = inp.target
    target = len(stages) - 1
    if wanted is not None or program.target is not None:
        name = wanted if wanted is not None else program.target[0]
        found = [i for i, s in enumerate(program.stages) if s.name == name]
        if not found:
            line, column = (1, 1) if wanted is not None else program.target[1:]
            raise buildfile.BuildfileError(line, column, f"there is no stage named `{name}` to build", name)
        target = found[0]
    warnings = []
    if unused:
        warnings.append(
            diagnostic(inp.file_name, 1, 1, "build args not used by any param: " + ", ".join(unused), " ".join(unused))
        )
    return t.Translation(graph=t.Graph(stages=stages, target=target, files=[]), warnings=warnings)


class WitWorld(wit_world.WitWorld):
    def info(self) -> wit_world.FrontendInfo:
        return wit_world.FrontendInfo(
            name=NAME,
            version=VERSION,
            description="The Buildfile language, a frontend written in Python",
        )

    def translate(self, input: t.Input) -> t.Translation:
        try:
            return translate(input)
        except buildfile.BuildfileError as e:
            raise Err([diagnostic(input.file_name, e.line, e.column, e.message, e.text)])
