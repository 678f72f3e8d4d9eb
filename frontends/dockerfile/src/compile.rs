//! The compiler from a Dockerfile parse tree to the stage-graph IR, following BuildKit's
//! `dockerfile2llb`: stages and their bases, ARG scoping (global ARGs for `FROM` lines, stage
//! ARGs, build args, predefined platform and proxy args), variable expansion in the
//! instructions Docker expands, shell forms turned into argument vectors, flag validation,
//! heredocs, `ONBUILD` triggers of base images, `--target` and `# check=` warnings.

use std::collections::{HashMap, HashSet};

use wbuild_parser::{Directives, Node, ParseResult, Warning};

use crate::bindings::wbuild::frontend::host::ImageConfig;
use crate::bindings::wbuild::frontend::types::{
    AddOptions, ArgDecl, Base, CopyOp, CopySource, Diagnostic, FileMode, Graph, Healthcheck,
    ImageRef, InlineFile, Input, KeyValue, Mount, Network, Op, OpNode, Platform, RunOp, Security,
    Source, SourceFile, Span, Stage, TextMount, Translation,
};
use crate::flags::{Flags, Kind};
use crate::items::{Choice, Fragments, Item};
use crate::{mounts, values};

mod include;
pub use include::MAX_INCLUDE_DEPTH;

/// What the compiler needs from the host; the real one calls the WIT imports, tests use a fake.
pub trait Host {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, String>;

    /// A file of the build context (`INCLUDE`), by its path relative to the context root.
    /// A host without a build context answers with an error saying so.
    fn read_context_file(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!(
            "{path}: this build has no build context to read files from"
        ))
    }
}

/// The host of a running component: the `wbuild:frontend/host` imports.
pub struct HostImports;

impl Host for HostImports {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, String> {
        crate::bindings::wbuild::frontend::host::resolve_image_config(reference, platform)
    }

    fn read_context_file(&self, path: &str) -> Result<Vec<u8>, String> {
        crate::bindings::wbuild::frontend::host::read_context_file(path)
    }
}

/// Parses `input.source` and compiles it.
pub fn translate(input: &Input, host: &dyn Host) -> Result<Translation, Vec<Diagnostic>> {
    let tree = wbuild_parser::parse(&input.source)
        .map_err(|e| vec![parse_diagnostic(&input.file_name, e)])?;
    compile(input, &tree, host)
}

/// A parse error of the build file `file` as the diagnostic a frontend returns.
pub fn parse_diagnostic(file: &str, e: wbuild_parser::ParseError) -> Diagnostic {
    Diagnostic {
        file: file.to_string(),
        line: e.line.max(1) as u32,
        column: e.column.max(1) as u32,
        message: e.message,
        text: e.text,
        included_from: Vec::new(),
    }
}

/// Same, from an already-parsed tree.
pub fn compile(
    input: &Input,
    tree: &ParseResult,
    host: &dyn Host,
) -> Result<Translation, Vec<Diagnostic>> {
    let items: Vec<Item> = tree.children.iter().map(Item::Instruction).collect();
    compile_items(input, &tree.directives, &tree.warnings, &items, host)
}

/// Compiles a tree of items whose conditional blocks are decided as the compiler reaches them
/// (the extended-syntax frontend). `directives` and `warnings` come from the parse.
pub fn compile_items(
    input: &Input,
    directives: &Directives,
    warnings: &[Warning],
    items: &[Item],
    host: &dyn Host,
) -> Result<Translation, Vec<Diagnostic>> {
    Compiler::new(input, directives, host).run(warnings, items)
}

/// Same, for a syntax with `INCLUDE` ([`Item::Include`]): `fragments` parses the fragments the
/// items include, which are read through [`Host::read_context_file`].
pub fn compile_with_includes(
    input: &Input,
    directives: &Directives,
    warnings: &[Warning],
    items: &[Item],
    host: &dyn Host,
    fragments: &dyn Fragments,
) -> Result<Translation, Vec<Diagnostic>> {
    let mut compiler = Compiler::new(input, directives, host);
    compiler.fragments = Some(fragments);
    compiler.run(warnings, items)
}

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Build args RUN sees without an `ARG` declaration (BuildKit's proxy args).
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The image-config side of a stage while it is compiled (and at its end, for stages built on
/// it).
#[derive(Debug, Clone, Default)]
struct State {
    /// The image config's ENV.
    env: Vec<(String, String)>,
    /// Declared ARGs in scope, with their effective values.
    args: Vec<(String, Option<String>)>,
    /// What expansion and RUN see, as BuildKit's LLB state environment: ENV and every ARG with
    /// a value set the same list, so the later of an ENV and an ARG of one name wins (the
    /// Dockerfile reference says ENV always does; BuildKit's `dispatchArg` disagrees).
    vars: Vec<(String, String)>,
    workdir: String,
    shell: Vec<String>,
    cmd_set: bool,
    /// ONBUILD triggers recorded in this stage (run by stages built on it).
    onbuild: Vec<String>,
}

impl State {
    fn lookup(&self, key: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn set_var(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
    }

    fn set_env(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.env.push((key.to_string(), value.to_string())),
        }
        self.set_var(key, value);
    }

    /// `ARG key[=value]`: an ARG without a value changes no variable (BuildKit `dispatchArg`).
    fn set_arg(&mut self, key: &str, value: Option<String>) {
        if let Some(v) = &value {
            self.set_var(key, v);
        }
        match self.args.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value,
            None => self.args.push((key.to_string(), value)),
        }
    }

    /// The variables RUN sees beyond the image config's ENV: those an ARG set, or set to
    /// another value than the config's.
    fn run_env(&self) -> Vec<KeyValue> {
        self.vars
            .iter()
            .filter(|(k, v)| !self.env.iter().any(|(ek, ev)| ek == k && ev == v))
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }
}

/// A stage being compiled.
struct Current {
    index: usize,
    state: State,
    ops: Vec<OpNode>,
    deps: Vec<u32>,
    /// `FROM --platform` (or inherited from a base stage); none means the target platform.
    platform: Option<Platform>,
}

/// A compiled stage plus what later stages and the reachability check need.
struct Compiled {
    stage: Stage,
    end: State,
    deps: Vec<u32>,
    /// Failing to resolve the base image only matters when the stage is built.
    resolve_error: Option<Diagnostic>,
}

/// `# check=skip=...;error=true`.
#[derive(Default)]
struct Checks {
    skip: HashSet<String>,
    skip_all: bool,
    error: bool,
}

impl Checks {
    fn parse(value: &str) -> Checks {
        let mut c = Checks::default();
        for part in value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            c.skip_all = true;
                        }
                        c.skip.insert(rule.to_ascii_lowercase());
                    }
                }
                "error" => c.error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        c
    }

    fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.contains(&rule.to_ascii_lowercase())
    }
}

struct Compiler<'a> {
    input: &'a Input,
    host: &'a dyn Host,
    /// The file being compiled: the build file, or a fragment it included.
    file: include::Frame,
    /// The files that included the current one, outermost first.
    outer: Vec<include::Frame>,
    /// The fragments read so far (`graph.files`).
    files: Vec<SourceFile>,
    /// How this syntax parses fragments; none when it has no `INCLUDE`.
    fragments: Option<&'a dyn Fragments>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Lint warnings from `# check=` rules (errors when `error=true`).
    lint: Vec<Diagnostic>,
    checks: Checks,
    build_args: HashMap<String, String>,
    used_args: HashSet<String>,
    /// Global ARGs (before the first FROM) with effective values; predefined args first.
    global: Vec<(String, Option<String>)>,
    /// Stage names by index, as written on the FROM lines compiled so far.
    names: Vec<Option<String>>,
    /// Every stage name in the file (in every branch of a conditional block) and the line of
    /// its first FROM, to tell a reference to a stage that is not there from an image.
    all_names: HashMap<String, usize>,
    stages: Vec<Compiled>,
    configs: HashMap<(String, String), Result<ImageConfig, String>>,
}

type R<T> = Result<T, Diagnostic>;

impl<'a> Compiler<'a> {
    fn new(input: &'a Input, directives: &Directives, host: &'a dyn Host) -> Self {
        let mut build_args = HashMap::new();
        for kv in &input.build_args {
            build_args.insert(kv.key.clone(), kv.value.clone());
        }
        let mut global = Vec::new();
        for (prefix, p) in [
            ("TARGET", &input.target_platform),
            ("BUILD", &input.build_platform),
        ] {
            global.push((
                format!("{prefix}PLATFORM"),
                Some(values::format_platform(p)),
            ));
            global.push((format!("{prefix}OS"), Some(p.os.clone())));
            global.push((format!("{prefix}ARCH"), Some(p.architecture.clone())));
            global.push((
                format!("{prefix}VARIANT"),
                Some(p.variant.clone().unwrap_or_default()),
            ));
        }
        let checks = directives
            .check
            .as_ref()
            .map(|(v, _)| Checks::parse(v))
            .unwrap_or_default();
        Compiler {
            input,
            host,
            file: include::Frame::main(input, directives.escape),
            outer: Vec::new(),
            files: Vec::new(),
            fragments: None,
            errors: Vec::new(),
            warnings: Vec::new(),
            lint: Vec::new(),
            checks,
            build_args,
            used_args: HashSet::new(),
            global,
            names: Vec::new(),
            all_names: HashMap::new(),
            stages: Vec::new(),
            configs: HashMap::new(),
        }
    }

    // ---- diagnostics ----

    fn diag_at(&self, line: usize, column: usize, message: String, text: &str) -> Diagnostic {
        Diagnostic {
            file: self.file.name.clone(),
            line: line.max(1) as u32,
            column: column.max(1) as u32,
            message,
            text: text.to_string(),
            included_from: self.file.included_from.clone(),
        }
    }

    fn err(&self, node: &Node, message: impl Into<String>) -> Diagnostic {
        self.diag_at(node.start_line, node.column, message.into(), &node.original)
    }

    /// An error about a piece of the instruction (a flag, a word), located on its line when
    /// it can be found there.
    fn err_text(&self, node: &Node, message: impl Into<String>, text: &str) -> Diagnostic {
        let column = self
            .file
            .lines
            .get(node.start_line.wrapping_sub(1))
            .and_then(|l| l.find(text).map(|b| l[..b].chars().count() + 1))
            .filter(|_| !text.is_empty())
            .unwrap_or(node.column);
        self.diag_at(node.start_line, column, message.into(), text)
    }

    fn span(&self, node: &Node) -> Span {
        let end_line = node.end_line.max(node.start_line).max(1);
        let end_column = self
            .file
            .lines
            .get(end_line - 1)
            .map(|l| l.chars().count())
            .unwrap_or(1)
            .max(1);
        Span {
            line: node.start_line.max(1) as u32,
            column: node.column.max(1) as u32,
            end_line: end_line as u32,
            end_column: end_column as u32,
            file: self.file.index,
        }
    }

    fn lint(&mut self, rule: &str, node: &Node, message: String) {
        if self.checks.enabled(rule) {
            let d = self.diag_at(
                node.start_line,
                node.column,
                format!("{rule}: {message}"),
                &node.original,
            );
            self.lint.push(d);
        }
    }

    fn flags(&self, node: &Node, spec: &[(&'static str, Kind)]) -> R<Flags> {
        Flags::parse(&node.flags, spec).map_err(|e| self.err_text(node, e.message, &e.text))
    }

    fn no_flags(&self, node: &Node) -> R<()> {
        self.flags(node, &[]).map(|_| ())
    }

    // ---- expansion ----

    fn expand_with(
        &self,
        node: &Node,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> R<String> {
        wbuild_parser::shell::expand_word(word, self.file.escape, env).map_err(|e| {
            self.err_text(
                node,
                format!("failed to process \"{word}\": {}", e.message),
                word,
            )
        })
    }

    fn expand(&self, state: &State, node: &Node, word: &str) -> R<String> {
        self.expand_with(node, word, &|k| state.lookup(k))
    }

    fn global_lookup(&self, key: &str) -> Option<String> {
        self.global
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.clone())
    }

    fn expand_global(&self, node: &Node, word: &str) -> R<String> {
        self.expand_with(node, word, &|k| self.global_lookup(k))
    }

    fn build_arg(&mut self, key: &str) -> Option<String> {
        let v = self.build_args.get(key).cloned();
        if v.is_some() {
            self.used_args.insert(key.to_string());
        }
        v
    }

    // ---- driver ----

    fn run(mut self, warnings: &[Warning], items: &[Item]) -> Result<Translation, Vec<Diagnostic>> {
        for w in warnings {
            let d = self.diag_at(w.line, 1, w.message.clone(), "");
            self.warnings.push(d);
        }
        // Stage names first, so a reference to a later stage is recognised as one.
        let mut last_stage: Option<Option<String>> = None;
        for item in items {
            item.visit_instructions(&mut |node| {
                if node.value == "from" {
                    last_stage = Some(stage_name(node));
                }
                if let Some(name) = stage_name(node) {
                    self.all_names.entry(name).or_insert(node.start_line);
                }
            });
        }
        // The built-in TARGETSTAGE (BuildKit `defaultArgs`): `--target` as given, else the last
        // stage's name, else `default`; a `--build-arg` of that name overrides it.
        let target_stage = self
            .input
            .target
            .clone()
            .or(last_stage.flatten())
            .unwrap_or_else(|| "default".into());
        let target_stage = self.build_arg("TARGETSTAGE").unwrap_or(target_stage);
        self.global.push(("TARGETSTAGE".into(), Some(target_stage)));

        let mut current: Option<Current> = None;
        self.walk(items, &mut current);
        if let Some(cur) = current.take() {
            self.finish(cur);
        }
        if self.stages.is_empty() && self.errors.is_empty() {
            let d = self.diag_at(
                1,
                1,
                "the Dockerfile has no FROM instruction: there is no stage to build".into(),
                "",
            );
            self.errors.push(d);
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }

        let target = match &self.input.target {
            None => self.stages.len() - 1,
            Some(t) => {
                let wanted = t.to_ascii_lowercase();
                match self
                    .stages
                    .iter()
                    .position(|s| s.stage.name.as_deref() == Some(wanted.as_str()))
                {
                    Some(i) => i,
                    None => {
                        let names: Vec<&str> = self
                            .stages
                            .iter()
                            .filter_map(|s| s.stage.name.as_deref())
                            .collect();
                        let list = if names.is_empty() {
                            "the file has no named stages".to_string()
                        } else {
                            format!("stages: {}", names.join(", "))
                        };
                        let d = self.diag_at(
                            1,
                            1,
                            format!("target stage \"{t}\" could not be found ({list})"),
                            t,
                        );
                        return Err(vec![d]);
                    }
                }
            }
        };

        // Base images that could not be resolved fail the build only when their stage runs.
        let mut reachable = vec![false; self.stages.len()];
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if i < reachable.len() && !reachable[i] {
                reachable[i] = true;
                todo.extend(self.stages[i].deps.iter().map(|d| *d as usize));
            }
        }
        let mut errors = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            if let Some(d) = &s.resolve_error {
                if reachable[i] {
                    errors.push(d.clone());
                } else {
                    self.warnings.push(d.clone());
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if self.checks.error && !self.lint.is_empty() {
            return Err(self.lint);
        }

        let mut unused: Vec<&str> = self
            .input
            .build_args
            .iter()
            .map(|kv| kv.key.as_str())
            .filter(|k| !self.used_args.contains(*k) && !PROXY_ARGS.contains(k))
            .collect();
        unused.dedup();
        if !unused.is_empty() {
            let d = self.diag_at(
                1,
                1,
                format!(
                    "one or more build-args were not consumed: {}",
                    unused.join(", ")
                ),
                &unused.join(" "),
            );
            self.warnings.push(d);
        }
        let mut warnings = self.lint;
        warnings.extend(self.warnings);
        Ok(Translation {
            graph: Graph {
                stages: self.stages.into_iter().map(|s| s.stage).collect(),
                target: target as u32,
                files: self.files,
            },
            warnings,
        })
    }

    fn walk(&mut self, items: &[Item], current: &mut Option<Current>) {
        for item in items {
            match item {
                Item::Instruction(node) => self.step(node, current),
                Item::Choice(choice) => self.choose(choice, current),
                Item::Include(node) => self.include(node, current),
            }
        }
    }

    fn step(&mut self, node: &Node, current: &mut Option<Current>) {
        if node.value == "from" {
            if let Some(cur) = current.take() {
                self.finish(cur);
            }
            *current = Some(self.start_stage(node));
            return;
        }
        let result = match current.as_mut() {
            Some(cur) => self.instruction(cur, node),
            None if node.value == "arg" => self.global_arg(node),
            None => Err(self.err(
                node,
                format!(
                    "{} before the first FROM: only ARG instructions may come before \
                     the first FROM (no build stage in current context)",
                    node.value.to_ascii_uppercase()
                ),
            )),
        };
        if let Err(d) = result {
            self.errors.push(d);
        }
    }

    /// Compiles the first branch of `choice` whose condition holds. A condition sees what a
    /// `$VAR` of an instruction at its place sees (the stage's ENV and ARGs; before the first
    /// FROM, the global ARGs) and, inside a stage, the global ARGs as well, so that a block can
    /// choose between stages on a global ARG without declaring it again.
    fn choose(&mut self, choice: &Choice, current: &mut Option<Current>) {
        for branch in &choice.branches {
            let holds = match &branch.condition {
                None => Ok(true),
                Some(c) => {
                    let state = current.as_ref().map(|c| &c.state);
                    c.holds(&|k| {
                        state
                            .and_then(|s| s.lookup(k))
                            .or_else(|| self.global_lookup(k))
                    })
                }
            };
            match holds {
                Ok(true) => {
                    self.walk(&branch.items, current);
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    let d = self.diag_at(e.line, e.column, e.message, &e.text);
                    self.errors.push(d);
                    return;
                }
            }
        }
    }

    /// Why `name` (lower case) is not a stage at this point, when the file defines it elsewhere.
    fn missing_stage(&self, name: &str, line: usize) -> Option<String> {
        let defined = *self.all_names.get(name)?;
        Some(if defined < line {
            format!(
                "stage \"{name}\" is defined (line {defined}) in a branch of a conditional \
                 block that was not taken"
            )
        } else {
            format!("stage \"{name}\" is used before it is defined: move its FROM above this one")
        })
    }

    fn finish(&mut self, cur: Current) {
        let c = &mut self.stages[cur.index];
        c.stage.ops = cur.ops;
        c.end = cur.state;
        c.deps = cur.deps;
        c.stage.platform = cur.platform;
    }

    // ---- FROM ----

    fn start_stage(&mut self, node: &Node) -> Current {
        let index = self.stages.len();
        self.names.push(stage_name(node));
        let mut resolve_error = None;
        let (name, base, platform, state) = match self.parse_from(node, index) {
            Ok(parts) => parts,
            Err(d) => {
                self.errors.push(d);
                (None, Base::Scratch, None, scratch_state())
            }
        };
        let mut state = state;
        let mut deps = Vec::new();
        let mut triggers = Vec::new();
        let platform = match &base {
            Base::Stage(i) => {
                deps.push(*i);
                let parent = &self.stages[*i as usize];
                triggers = parent.end.onbuild.clone();
                platform.or_else(|| parent.stage.platform.clone())
            }
            _ => platform,
        };
        if let Base::Image(r) = &base {
            let p = platform
                .clone()
                .unwrap_or_else(|| self.input.target_platform.clone());
            match self.resolve(&r.reference, &p) {
                Ok(cfg) => {
                    state = image_state(&cfg);
                    triggers = cfg.onbuild.clone();
                }
                Err(e) => {
                    resolve_error = Some(self.err(
                        node,
                        format!(
                            "failed to resolve image config for \"{}\": {e}",
                            r.reference
                        ),
                    ))
                }
            }
        }
        state.onbuild.clear();
        state.cmd_set = false;
        let span = self.span(node);
        self.stages.push(Compiled {
            stage: Stage {
                name,
                base,
                platform: platform.clone(),
                ops: Vec::new(),
                span,
                text: node.original.clone(),
            },
            end: State::default(),
            deps: Vec::new(),
            resolve_error,
        });
        let mut cur = Current {
            index,
            state,
            ops: Vec::new(),
            deps,
            platform,
        };
        for trigger in triggers {
            if let Err(d) = self.trigger(&mut cur, node, &trigger) {
                self.errors.push(d);
            }
        }
        cur
    }

    /// Runs one ONBUILD trigger of the base at the start of the stage, located at its FROM.
    fn trigger(&mut self, cur: &mut Current, from: &Node, trigger: &str) -> R<()> {
        let tree = wbuild_parser::parse(trigger).map_err(|e| {
            self.err_text(
                from,
                format!("invalid ONBUILD trigger of the base image: {}", e.message),
                trigger,
            )
        })?;
        for child in &tree.children {
            if matches!(child.value.as_str(), "onbuild" | "from" | "maintainer") {
                return Err(self.err_text(
                    from,
                    format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        child.value.to_ascii_uppercase()
                    ),
                    trigger,
                ));
            }
            let mut node = child.clone();
            node.start_line = from.start_line;
            node.end_line = from.end_line;
            node.column = from.column;
            self.instruction(cur, &node)?;
        }
        Ok(())
    }

    fn resolve(&mut self, reference: &str, platform: &Platform) -> Result<ImageConfig, String> {
        let key = (reference.to_string(), values::format_platform(platform));
        if let Some(r) = self.configs.get(&key) {
            return r.clone();
        }
        let r = self.host.resolve_image_config(reference, platform);
        self.configs.insert(key, r.clone());
        r
    }

    #[allow(clippy::type_complexity)]
    fn parse_from(
        &mut self,
        node: &Node,
        index: usize,
    ) -> R<(Option<String>, Base, Option<Platform>, State)> {
        let flags = self.flags(node, &[("platform", Kind::String)])?;
        let (image, name) = match node.args.as_slice() {
            [image] => (image, None),
            [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let from_kw = node.original.split_whitespace().next().unwrap_or("FROM");
                let upper = |s: &str| s == s.to_ascii_uppercase();
                let lower = |s: &str| s == s.to_ascii_lowercase();
                if (upper(from_kw) && !upper(as_kw)) || (lower(from_kw) && !lower(as_kw)) {
                    self.lint(
                        "FromAsCasing",
                        node,
                        format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
                    );
                }
                (image, Some(name))
            }
            _ => {
                return Err(self.err(
                    node,
                    "FROM requires either one argument, or three: FROM <image> [AS <name>]",
                ));
            }
        };
        let name = match name {
            None => None,
            Some(n) => {
                let lower = n.to_ascii_lowercase();
                if lower != *n {
                    self.lint(
                        "StageNameCasing",
                        node,
                        format!("Stage name '{n}' should be lowercase"),
                    );
                }
                if !values::valid_stage_name(&lower) {
                    return Err(self.err_text(
                        node,
                        format!(
                            "invalid name for build stage: \"{n}\", name can't start with a \
                             number or contain symbols"
                        ),
                        n,
                    ));
                }
                if self
                    .stages
                    .iter()
                    .any(|s| s.stage.name.as_deref() == Some(&lower))
                {
                    return Err(self.err_text(
                        node,
                        format!("duplicate stage name \"{lower}\""),
                        n,
                    ));
                }
                Some(lower)
            }
        };
        let platform = match flags.string("platform") {
            None => None,
            Some(o) => {
                let raw = o.value.clone().unwrap_or_default();
                let v = self.expand_global(node, &raw)?;
                Some(
                    values::parse_platform(&v, &self.input.target_platform)
                        .map_err(|e| self.err_text(node, e, &o.raw))?,
                )
            }
        };
        let reference = self.expand_global(node, image)?;
        if reference.trim().is_empty() {
            return Err(self.err_text(
                node,
                format!("base name ({image}) should not be blank"),
                image,
            ));
        }
        if reference == "scratch" {
            return Ok((name, Base::Scratch, platform, scratch_state()));
        }
        let lower = reference.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| n.as_deref() == Some(&lower)) {
            if i < index {
                let state = self.stages[i].end.clone();
                return Ok((name, Base::Stage(i as u32), platform, state));
            }
            return Err(self.err_text(
                node,
                format!("circular dependency detected on stage: {lower}"),
                image,
            ));
        }
        if let Some(message) = self.missing_stage(&lower, self.main_line(node)) {
            return Err(self.err_text(node, message, image));
        }
        let base = Base::Image(ImageRef {
            reference,
            platform: platform.clone(),
        });
        Ok((name, base, platform, scratch_state()))
    }

    // ---- ARG ----

    /// `ARG` before the first FROM.
    fn global_arg(&mut self, node: &Node) -> R<()> {
        self.no_flags(node)?;
        if node.args.is_empty() {
            return Err(self.err(node, "ARG requires at least one argument"));
        }
        for word in &node.args {
            let (key, default) = split_arg(word);
            if key.is_empty() {
                return Err(self.err_text(node, "ARG names can not be blank", word));
            }
            let default = default.map(|d| self.expand_global(node, d)).transpose()?;
            let value = self.build_arg(key).or(default);
            match self.global.iter_mut().find(|(k, _)| k == key) {
                Some(e) => e.1 = value,
                None => self.global.push((key.to_string(), value)),
            }
        }
        Ok(())
    }

    /// `ARG` inside a stage.
    fn stage_arg(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        self.no_flags(node)?;
        if node.args.is_empty() {
            return Err(self.err(node, "ARG requires at least one argument"));
        }
        for word in &node.args {
            let (key, default) = split_arg(word);
            if key.is_empty() {
                return Err(self.err_text(node, "ARG names can not be blank", word));
            }
            let default = default
                .map(|d| self.expand(&cur.state, node, d))
                .transpose()?;
            let value = match self.build_arg(key) {
                Some(v) => Some(v),
                None => default.or_else(|| self.global_lookup(key)),
            };
            cur.state.set_arg(key, value.clone());
            self.push(
                cur,
                node,
                Op::Arg(ArgDecl {
                    key: key.to_string(),
                    value,
                }),
            );
        }
        Ok(())
    }

    // ---- instructions ----

    fn push(&self, cur: &mut Current, node: &Node, op: Op) {
        cur.ops.push(OpNode {
            op,
            span: self.span(node),
            text: node.original.clone(),
        });
    }

    fn instruction(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        match node.value.as_str() {
            "arg" => self.stage_arg(cur, node),
            "run" => self.run_instr(cur, node),
            "copy" => self.copy(cur, node, false),
            "add" => self.copy(cur, node, true),
            "env" => self.env(cur, node),
            "label" => self.label(cur, node),
            "workdir" => self.workdir(cur, node),
            "user" => {
                self.no_flags(node)?;
                let [word] = node.args.as_slice() else {
                    return Err(self.err(node, "USER requires exactly one argument"));
                };
                let user = self.expand(&cur.state, node, word)?;
                self.push(cur, node, Op::User(user));
                Ok(())
            }
            "cmd" | "entrypoint" => self.cmd(cur, node),
            "shell" => {
                self.no_flags(node)?;
                if !node.json {
                    return Err(self.err(node, "SHELL requires the arguments to be in JSON form"));
                }
                if node.args.is_empty() {
                    return Err(self.err(node, "SHELL requires at least one argument"));
                }
                cur.state.shell = node.args.clone();
                self.push(cur, node, Op::Shell(node.args.clone()));
                Ok(())
            }
            "expose" => {
                self.no_flags(node)?;
                if node.args.is_empty() {
                    return Err(self.err(node, "EXPOSE requires at least one argument"));
                }
                let mut ports = Vec::new();
                for word in &node.args {
                    let v = self.expand(&cur.state, node, word)?;
                    for spec in v.split_whitespace() {
                        ports.extend(
                            values::parse_ports(spec).map_err(|e| self.err_text(node, e, word))?,
                        );
                    }
                }
                self.push(cur, node, Op::Expose(ports));
                Ok(())
            }
            "volume" => {
                self.no_flags(node)?;
                if node.args.is_empty() {
                    return Err(self.err(node, "VOLUME requires at least one argument"));
                }
                let mut vols = Vec::new();
                for word in &node.args {
                    let v = self.expand(&cur.state, node, word)?;
                    if v.trim().is_empty() {
                        return Err(self.err(node, "VOLUME specified can not be an empty string"));
                    }
                    vols.push(v);
                }
                self.push(cur, node, Op::Volume(vols));
                Ok(())
            }
            "stopsignal" => {
                self.no_flags(node)?;
                let [word] = node.args.as_slice() else {
                    return Err(self.err(node, "STOPSIGNAL requires exactly one argument"));
                };
                let sig = self.expand(&cur.state, node, word)?;
                if !values::valid_signal(&sig) {
                    return Err(self.err_text(node, format!("invalid signal: {sig}"), word));
                }
                self.push(cur, node, Op::Stopsignal(sig));
                Ok(())
            }
            "healthcheck" => self.healthcheck(cur, node),
            "onbuild" => {
                self.no_flags(node)?;
                let Some(child) = &node.child else {
                    return Err(self.err(node, "ONBUILD requires at least one argument"));
                };
                match child.value.as_str() {
                    "onbuild" => {
                        return Err(
                            self.err(node, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
                        );
                    }
                    "from" | "maintainer" => {
                        return Err(self.err(
                            node,
                            format!(
                                "{} isn't allowed as an ONBUILD trigger",
                                child.value.to_ascii_uppercase()
                            ),
                        ));
                    }
                    _ => {}
                }
                let mut text = child.original.trim();
                if text
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("onbuild "))
                {
                    text = text[8..].trim_start();
                }
                cur.state.onbuild.push(text.to_string());
                self.push(cur, node, Op::Onbuild(text.to_string()));
                Ok(())
            }
            "maintainer" => {
                self.no_flags(node)?;
                if node.args.is_empty() {
                    return Err(self.err(node, "MAINTAINER requires exactly one argument"));
                }
                self.lint(
                    "MaintainerDeprecated",
                    node,
                    "Maintainer instruction is deprecated in favor of using label".into(),
                );
                self.push(cur, node, Op::Maintainer(node.args.join(" ")));
                Ok(())
            }
            other => Err(self.err(
                node,
                format!("unknown instruction: {}", other.to_uppercase()),
            )),
        }
    }

    fn env(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        self.no_flags(node)?;
        let pairs = self.pairs(&cur.state, node, "ENV")?;
        for (k, v) in &pairs {
            cur.state.set_env(k, v);
        }
        let kvs = pairs
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect();
        self.push(cur, node, Op::Env(kvs));
        Ok(())
    }

    fn label(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        self.no_flags(node)?;
        let pairs = self.pairs(&cur.state, node, "LABEL")?;
        let kvs = pairs
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect();
        self.push(cur, node, Op::Label(kvs));
        Ok(())
    }

    /// ENV/LABEL `[name, value, sep]` triples, expanded against the state before the
    /// instruction.
    fn pairs(&self, state: &State, node: &Node, what: &str) -> R<Vec<(String, String)>> {
        if node.args.is_empty() || !node.args.len().is_multiple_of(3) {
            return Err(self.err(node, format!("{what} requires at least one argument")));
        }
        let mut out = Vec::new();
        for t in node.args.chunks(3) {
            let key = self.expand(state, node, &t[0])?;
            if key.is_empty() {
                return Err(self.err(node, format!("{what} names can not be blank")));
            }
            let value = self.expand(state, node, &t[1])?;
            out.push((key, value));
        }
        Ok(out)
    }

    fn workdir(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        self.no_flags(node)?;
        let [word] = node.args.as_slice() else {
            return Err(self.err(node, "WORKDIR requires exactly one argument"));
        };
        let dir = self.expand(&cur.state, node, word)?;
        if dir.is_empty() {
            return Err(self.err(node, "WORKDIR requires a non-empty path"));
        }
        let abs = values::join_workdir(&cur.state.workdir, &dir);
        cur.state.workdir = abs.clone();
        self.push(cur, node, Op::Workdir(abs));
        Ok(())
    }

    fn shell_form(&self, state: &State, line: String) -> Vec<String> {
        let mut argv = if state.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            state.shell.clone()
        };
        argv.push(line);
        argv
    }

    fn cmd(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        self.no_flags(node)?;
        let kw = node.value.to_ascii_uppercase();
        let argv = if node.json {
            node.args.clone()
        } else {
            if node.args.is_empty() {
                return Err(self.err(node, format!("{kw} requires at least one argument")));
            }
            self.lint(
                "JSONArgsRecommended",
                node,
                format!(
                    "JSON arguments recommended for {kw} to prevent unintended behavior \
                     related to OS signals"
                ),
            );
            self.shell_form(&cur.state, node.args.join(" "))
        };
        if node.value == "cmd" {
            cur.state.cmd_set = true;
            self.push(cur, node, Op::Cmd(Some(argv)));
        } else {
            self.push(cur, node, Op::Entrypoint(Some(argv)));
            if !cur.state.cmd_set {
                self.push(cur, node, Op::Cmd(None));
            }
        }
        Ok(())
    }

    // ---- RUN ----

    fn run_instr(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        let flags = self.flags(
            node,
            &[
                ("mount", Kind::Strings),
                ("network", Kind::String),
                ("security", Kind::String),
            ],
        )?;
        let network = match flags.string("network") {
            None => Network::Default,
            Some(o) => match o.value.as_deref().unwrap_or_default() {
                "default" => Network::Default,
                "none" => Network::None,
                "host" => Network::Host,
                v => {
                    return Err(self.err_text(
                        node,
                        format!("unsupported network mode \"{v}\" (use default, none or host)"),
                        &o.raw,
                    ));
                }
            },
        };
        let security = match flags.string("security") {
            None => Security::Sandbox,
            Some(o) => match o.value.as_deref().unwrap_or_default() {
                "sandbox" => Security::Sandbox,
                "insecure" => Security::Insecure,
                v => {
                    return Err(self.err_text(
                        node,
                        format!("unsupported security mode \"{v}\" (use sandbox or insecure)"),
                        &o.raw,
                    ));
                }
            },
        };
        let mut mounts = Vec::new();
        let mut ssh_index = 0;
        for o in flags.strings("mount") {
            let value = o.value.clone().unwrap_or_default();
            let state = &cur.state;
            let expand = |w: &str| -> Result<String, String> {
                wbuild_parser::shell::expand_word(w, self.file.escape, &|k| state.lookup(k))
                    .map_err(|e| format!("failed to process \"{w}\": {}", e.message))
            };
            let resolve = |f: &str| {
                self.resolve_source(
                    cur.index,
                    cur.platform.as_ref(),
                    f,
                    "from",
                    self.main_line(node),
                )
            };
            let ctx = mounts::MountContext {
                expand: &expand,
                resolve_from: &resolve,
                workdir: &state.workdir,
                ssh_index,
            };
            let m =
                mounts::parse_mount(&value, &ctx).map_err(|e| self.err_text(node, e, &o.raw))?;
            let dep = match &m {
                Mount::Bind(b) => Some(&b.from),
                Mount::Cache(c) => c.from.as_ref(),
                Mount::Ssh(_) => {
                    ssh_index += 1;
                    None
                }
                _ => None,
            };
            if let Some(Source::Stage(i)) = dep {
                cur.deps.push(*i);
            }
            mounts.push(m);
        }

        let args = if node.json {
            if node.args.is_empty() {
                return Err(self.err(node, "RUN requires at least one argument"));
            }
            node.args.clone()
        } else {
            let line = node.args.join(" ");
            if line.trim().is_empty() && node.heredocs.is_empty() {
                return Err(self.err(node, "RUN requires at least one argument"));
            }
            match heredoc_only(&line, &node.heredocs) {
                Some(h) => {
                    if h.content.starts_with("#!") {
                        let path = format!("/dev/pipes/{}", h.name);
                        mounts.push(Mount::Text(TextMount {
                            target: path.clone(),
                            content: h.content.clone(),
                            mode: 0o755,
                        }));
                        vec![path]
                    } else {
                        self.shell_form(&cur.state, h.content.clone())
                    }
                }
                None => {
                    let mut cmd = line;
                    for h in &node.heredocs {
                        cmd.push('\n');
                        cmd.push_str(&h.content);
                        cmd.push_str(&h.name);
                    }
                    self.shell_form(&cur.state, cmd)
                }
            }
        };

        let mut extra_env = cur.state.run_env();
        for proxy in PROXY_ARGS {
            if let Some(v) = self.build_args.get(proxy)
                && !extra_env.iter().any(|kv| kv.key == proxy)
                && cur.state.lookup(proxy).is_none()
            {
                extra_env.push(KeyValue {
                    key: proxy.to_string(),
                    value: v.clone(),
                });
            }
        }
        self.push(
            cur,
            node,
            Op::Run(RunOp {
                args,
                extra_env,
                network,
                security,
                mounts,
            }),
        );
        Ok(())
    }

    /// `--from` of COPY or `from=` of a mount: an earlier stage by name or index, else an image.
    fn resolve_source(
        &self,
        index: usize,
        platform: Option<&Platform>,
        from: &str,
        what: &str,
        line: usize,
    ) -> Result<Source, String> {
        if !from.is_empty() && from.chars().all(|c| c.is_ascii_digit()) {
            return match from.parse::<usize>() {
                Ok(i) if i < index => Ok(Source::Stage(i as u32)),
                Ok(i) if i == index => Err(format!(
                    "circular dependency detected on stage: {what}={from} is the current stage"
                )),
                _ => Err(format!(
                    "invalid {what}={from}: stage index {from} is not an earlier stage \
                     (this is stage {index})"
                )),
            };
        }
        let lower = from.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| n.as_deref() == Some(&lower)) {
            return match i.cmp(&index) {
                std::cmp::Ordering::Less => Ok(Source::Stage(i as u32)),
                std::cmp::Ordering::Equal => Err(format!(
                    "circular dependency detected on stage: {lower} ({what}={from} names the \
                     current stage)"
                )),
                std::cmp::Ordering::Greater => Err(format!(
                    "{what}={from} names stage \"{lower}\", which is defined later in the file"
                )),
            };
        }
        if let Some(&defined) = self.all_names.get(&lower) {
            return Err(if defined < line {
                format!(
                    "{what}={from} names stage \"{lower}\", which is defined (line {defined}) \
                     in a branch of a conditional block that was not taken"
                )
            } else {
                format!("{what}={from} names stage \"{lower}\", which is defined later in the file")
            });
        }
        if from.is_empty() {
            return Err(format!(
                "{what} requires a stage name, index or image reference"
            ));
        }
        Ok(Source::Image(ImageRef {
            reference: from.to_string(),
            platform: platform.cloned(),
        }))
    }

    // ---- COPY / ADD ----

    fn copy(&mut self, cur: &mut Current, node: &Node, add: bool) -> R<()> {
        let kw = if add { "ADD" } else { "COPY" };
        let mut spec = vec![
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
        ];
        if add {
            spec.extend([
                ("checksum", Kind::String),
                ("keep-git-dir", Kind::Bool),
                ("unpack", Kind::Bool),
            ]);
        } else {
            spec.extend([("from", Kind::String), ("parents", Kind::Bool)]);
        }
        let flags = self.flags(node, &spec)?;
        if node.args.len() < 2 {
            return Err(self.err(
                node,
                format!(
                    "{kw} requires at least two arguments, but only {} provided. Destination \
                     could not be determined",
                    if node.args.is_empty() {
                        "none was"
                    } else {
                        "one was"
                    }
                ),
            ));
        }
        let from = match flags.string("from") {
            None => Source::Context,
            Some(o) => {
                let v = o.value.clone().unwrap_or_default();
                if v.contains('$') {
                    return Err(self.err_text(
                        node,
                        format!(
                            "variables are not allowed in --from: \"{}\"; name a stage or an \
                             image literally, or add an alias stage whose FROM line uses the \
                             variable (ARG ... / FROM {v} AS src) and COPY --from=src",
                            o.raw
                        ),
                        &o.raw,
                    ));
                }
                let s = self
                    .resolve_source(
                        cur.index,
                        cur.platform.as_ref(),
                        &v,
                        "--from",
                        self.main_line(node),
                    )
                    .map_err(|e| self.err_text(node, e, &o.raw))?;
                if let Source::Stage(i) = s {
                    cur.deps.push(i);
                }
                s
            }
        };
        let state = &cur.state;
        let chown = flags
            .string("chown")
            .map(|o| self.expand(state, node, o.value.as_deref().unwrap_or_default()))
            .transpose()?
            .filter(|s| !s.is_empty());
        let chmod = match flags.string("chmod") {
            None => None,
            Some(o) => {
                let v = self.expand(state, node, o.value.as_deref().unwrap_or_default())?;
                match u32::from_str_radix(&v, 8) {
                    Ok(m) if m <= 0o7777 => Some(FileMode::Octal(m)),
                    Ok(_) => {
                        return Err(self.err_text(
                            node,
                            format!("invalid chmod parameter \"{v}\": mode out of range"),
                            &o.raw,
                        ));
                    }
                    Err(_) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => {
                        return Err(self.err_text(
                            node,
                            format!("invalid chmod parameter \"{v}\": not an octal mode"),
                            &o.raw,
                        ));
                    }
                    Err(_) if values::valid_symbolic_mode(&v) => Some(FileMode::Symbolic(v)),
                    Err(_) => {
                        return Err(self.err_text(
                            node,
                            format!(
                                "invalid chmod parameter \"{v}\": expected an octal mode (0755) \
                                 or a symbolic mode (u+x,g-w)"
                            ),
                            &o.raw,
                        ));
                    }
                }
            }
        };
        let mut excludes = Vec::new();
        for o in flags.strings("exclude") {
            excludes.push(self.expand(state, node, o.value.as_deref().unwrap_or_default())?);
        }
        let (srcs, dest) = node.args.split_at(node.args.len() - 1);
        let dest = self.expand(state, node, &dest[0])?;
        let mut sources = Vec::new();
        for word in srcs {
            if !node.json
                && let Some(h) = heredoc_for_word(word, &node.heredocs)
            {
                let content = if h.expand {
                    values::expand_heredoc(&h.content, self.file.escape, &|k| state.lookup(k))
                        .map_err(|e| self.err_text(node, e, word))?
                } else {
                    h.content.clone()
                };
                sources.push(CopySource::Inline(InlineFile {
                    name: h.name.clone(),
                    content,
                }));
                continue;
            }
            let v = self.expand(state, node, word)?;
            if add && values::is_git(&v) {
                sources.push(CopySource::Git(v));
            } else if values::is_url(&v) {
                if !add {
                    return Err(self.err_text(
                        node,
                        "source can't be a URL for COPY (use ADD for remote files)",
                        word,
                    ));
                }
                sources.push(CopySource::Url(v));
            } else {
                sources.push(CopySource::Path(v));
            }
        }
        let add_options = if add {
            let checksum = flags
                .string("checksum")
                .map(|o| self.expand(state, node, o.value.as_deref().unwrap_or_default()))
                .transpose()?;
            if let Some(c) = &checksum {
                if sources.len() != 1 {
                    return Err(self.err(node, "checksum can't be specified for multiple sources"));
                }
                if !matches!(sources[0], CopySource::Url(_) | CopySource::Git(_)) {
                    return Err(self.err_text(
                        node,
                        "checksum can't be specified for a local source (only URLs and git)",
                        c,
                    ));
                }
            }
            Some(AddOptions {
                unpack: flags.bool("unpack"),
                checksum,
                keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
            })
        } else {
            None
        };
        let op = CopyOp {
            from,
            sources,
            dest,
            chown,
            chmod,
            link: flags.bool("link").unwrap_or(false),
            parents: flags.bool("parents").unwrap_or(false),
            excludes,
            add: add_options,
        };
        self.push(cur, node, Op::Copy(op));
        Ok(())
    }

    // ---- HEALTHCHECK ----

    fn healthcheck(&mut self, cur: &mut Current, node: &Node) -> R<()> {
        let flags = self.flags(
            node,
            &[
                ("interval", Kind::String),
                ("timeout", Kind::String),
                ("start-period", Kind::String),
                ("start-interval", Kind::String),
                ("retries", Kind::String),
            ],
        )?;
        let Some(kind) = node.args.first() else {
            return Err(self.err(node, "HEALTHCHECK requires at least one argument"));
        };
        let rest = &node.args[1..];
        let test = match kind.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() {
                    return Err(self.err(node, "HEALTHCHECK NONE takes no arguments"));
                }
                vec!["NONE".to_string()]
            }
            "CMD" => {
                if rest.is_empty() || (!node.json && rest.join(" ").trim().is_empty()) {
                    return Err(self.err(node, "missing command after HEALTHCHECK CMD"));
                }
                if node.json {
                    std::iter::once("CMD".to_string())
                        .chain(rest.iter().cloned())
                        .collect()
                } else {
                    vec!["CMD-SHELL".to_string(), rest.join(" ")]
                }
            }
            _ => {
                return Err(self.err_text(
                    node,
                    format!("unknown type \"{kind}\" in HEALTHCHECK (try CMD)"),
                    kind,
                ));
            }
        };
        let duration = |name: &str| -> R<Option<u64>> {
            let Some(o) = flags.string(name) else {
                return Ok(None);
            };
            let v = o.value.as_deref().unwrap_or_default();
            let ns = values::parse_duration(v).map_err(|e| self.err_text(node, e, &o.raw))?;
            if ns < 0 {
                return Err(self.err_text(node, format!("--{name} cannot be negative"), &o.raw));
            }
            if ns == 0 {
                return Ok(None);
            }
            if ns < 1_000_000 {
                return Err(self.err_text(
                    node,
                    format!("--{name} \"{v}\" cannot be less than 1ms"),
                    &o.raw,
                ));
            }
            Ok(Some(ns as u64))
        };
        let interval = duration("interval")?;
        let timeout = duration("timeout")?;
        let start_period = duration("start-period")?;
        let start_interval = duration("start-interval")?;
        let retries = match flags.string("retries") {
            None => None,
            Some(o) => {
                let v = o.value.as_deref().unwrap_or_default();
                let n: i64 = v.parse().map_err(|_| {
                    self.err_text(node, format!("invalid --retries value \"{v}\""), &o.raw)
                })?;
                if n < 0 {
                    return Err(self.err_text(node, "--retries cannot be negative", &o.raw));
                }
                u32::try_from(n).ok().filter(|n| *n > 0)
            }
        };
        self.push(
            cur,
            node,
            Op::Healthcheck(Healthcheck {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }),
        );
        Ok(())
    }
}

/// The `AS name` of a FROM line, lower-cased.
fn stage_name(node: &Node) -> Option<String> {
    (node.value == "from" && node.args.len() == 3).then(|| node.args[2].to_ascii_lowercase())
}

fn scratch_state() -> State {
    State {
        workdir: "/".into(),
        shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        ..State::default()
    }
}

fn image_state(cfg: &ImageConfig) -> State {
    let env: Vec<(String, String)> = cfg
        .env
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    State {
        vars: env.clone(),
        env,
        args: Vec::new(),
        workdir: if cfg.working_dir.is_empty() {
            "/".into()
        } else {
            values::join_workdir("/", &cfg.working_dir)
        },
        shell: if cfg.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            cfg.shell.clone()
        },
        cmd_set: false,
        onbuild: Vec::new(),
    }
}

/// `NAME=default` or `NAME`.
fn split_arg(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    }
}

/// The heredoc a word such as `<<EOF`, `<<-"EOF"` introduces, if any.
fn heredoc_for_word<'h>(
    word: &str,
    heredocs: &'h [wbuild_parser::Heredoc],
) -> Option<&'h wbuild_parser::Heredoc> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    heredocs.iter().find(|h| h.name == name)
}

/// For `RUN <<EOF` whose command is nothing but one heredoc, that heredoc.
fn heredoc_only<'h>(
    line: &str,
    heredocs: &'h [wbuild_parser::Heredoc],
) -> Option<&'h wbuild_parser::Heredoc> {
    if heredocs.len() != 1 {
        return None;
    }
    let word = line.trim();
    if word.split_whitespace().count() != 1 {
        return None;
    }
    heredoc_for_word(word, heredocs)
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
