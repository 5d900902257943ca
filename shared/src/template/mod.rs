//! Templates in catalog items (Tera syntax): `{{fields.x}}`, `{{header.owner}}`,
//! `{{request.id}}`, `{{env.NAME}}`, `{{response.action.output}}`. This module
//! owns the template language: checking a template's syntax and finding the
//! variables it references, so catalog validation can reject a reference to
//! something that cannot exist before any request runs.

use std::collections::HashMap;

use tera::ast::{Expr, ExprVal, FunctionCall, In, LogicExpr, MacroCall, MathExpr, Node};

pub mod render;

/// A variable a template reads, as its dotted path: `["response", "db", "endpoint"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference(pub Vec<String>);

impl Reference {
    pub fn root(&self) -> &str {
        &self.0[0]
    }

    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

/// Whether `text` holds template syntax at all; plain strings skip the parser.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Checks the syntax of `text` and returns the variables it reads, in order
/// of the text, each once. Loop and `set` variables are local, not references.
/// Refuses what could reach past the namespaces: function and macro calls
/// (Tera's `get_env` reads any variable of the process), names Tera reserves
/// (`__tera_context` is the whole context, secrets included), and a loop or
/// `set` rebinding a namespace (which would hide `env.NAME` from the checks).
pub fn references(text: &str) -> Result<Vec<Reference>, String> {
    let mut walk = Walk::default();
    if !is_template(text) {
        return Ok(walk.found);
    }
    if let Some(pieces) = simple(text) {
        for piece in pieces {
            if let Piece::Path(path) = piece {
                walk.ident(path)?;
            }
        }
        return Ok(walk.found);
    }
    // Parsing alone: a whole `Tera` (with its filters and functions) per
    // string would cost more than the parse.
    let template = tera::Template::new("t", None, text).map_err(|err| syntax_message(&err))?;
    walk.nodes(&template.ast)?;
    Ok(walk.found)
}

/// Namespaces whose values a requester chooses or influences.
pub fn is_user_namespace(root: &str) -> bool {
    matches!(root, "fields" | "request" | "response")
}

/// A URL may read the requester's values only as plain placeholders,
/// which rendering percent-encodes one by one: through a filter or a
/// condition they could move the host or start a query.
pub fn check_url(text: &str) -> Result<(), String> {
    if simple(text).is_some() {
        return Ok(());
    }
    // A template that does not parse is reported as such elsewhere.
    let Ok(references) = references(text) else {
        return Ok(());
    };
    match references.iter().find(|r| is_user_namespace(r.root())) {
        Some(user) => Err(format!(
            "`{0}` in a URL must be a plain placeholder, such as {{{{{0}}}}}, so that it can be encoded",
            user.dotted()
        )),
        None => Ok(()),
    }
}

/// The namespaces a template reads; nothing may rebind them.
pub const NAMESPACES: [&str; 5] = ["fields", "header", "request", "env", "response"];

/// A part of a simple template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    /// A dotted variable path, such as `fields.name`.
    Path(&'a str),
}

/// The pieces of a template made only of text and `{{ dotted.path }}`
/// placeholders, the form nearly every catalog string takes; `None` for
/// anything else (filters, statements, comments, literals), which goes
/// to Tera. Recognising the simple form directly costs a scan instead of a
/// parse, for validation and rendering alike.
pub(crate) fn simple(text: &str) -> Option<Vec<Piece<'_>>> {
    if text.contains("{%") || text.contains("{#") {
        return None;
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let path = after[..end].trim();
        if !is_dotted_path(path) {
            return None;
        }
        pieces.push(Piece::Path(path));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Some(pieces)
}

/// A leaf that is exactly `{{ path | default(value=<literal>) }}`: the
/// path and the default as a typed value. Rendered like a plain
/// placeholder, it keeps the type of whichever it yields, so an optional
/// number stays a number (`"{{fields.max | default(value=10)}}"` → `10`).
pub(crate) fn defaulted(text: &str) -> Option<(String, serde_json::Value)> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || !inner.contains("default") {
        return None;
    }
    let template = tera::Template::new("t", None, text).ok()?;
    let [Node::VariableBlock(_, expr)] = template.ast.as_slice() else {
        return None;
    };
    let (ExprVal::Ident(path), [filter], false) =
        (&expr.val, expr.filters.as_slice(), expr.negated)
    else {
        return None;
    };
    if filter.name != "default" || filter.args.len() != 1 || !is_dotted_path(path) {
        return None;
    }
    let value = filter.args.get("value")?;
    if !value.filters.is_empty() || value.negated {
        return None;
    }
    let literal = match &value.val {
        ExprVal::String(text) => serde_json::Value::from(text.clone()),
        ExprVal::Int(number) => serde_json::Value::from(*number),
        ExprVal::Float(number) => serde_json::Value::from(*number),
        ExprVal::Bool(flag) => serde_json::Value::from(*flag),
        _ => return None,
    };
    Some((path.clone(), literal))
}

/// `name(.name|.index)*` where the first name is not a keyword or literal.
fn is_dotted_path(path: &str) -> bool {
    let mut segments = path.split('.');
    let Some(first) = segments.next() else {
        return false;
    };
    let is_name = |segment: &str| {
        segment.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let is_index =
        |segment: &str| !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    is_name(first)
        && !KEYWORDS.contains(&first)
        && segments.all(|segment| is_name(segment) || is_index(segment))
}

fn syntax_message(err: &tera::Error) -> String {
    use std::error::Error as _;
    // Tera's own message names our internal template; its cause has the
    // position (`--> 1:20`) and the reason (`= expected …`) between drawings.
    let detail = match err.source() {
        Some(cause) => cause.to_string(),
        None => err.to_string(),
    };
    let position = detail
        .lines()
        .find_map(|line| line.trim().strip_prefix("--> "))
        .and_then(|position| position.split(':').nth(1))
        .map(|column| format!(" at character {column}"))
        .unwrap_or_default();
    let reason = detail
        .lines()
        .find_map(|line| line.trim().strip_prefix("= "))
        .unwrap_or("unexpected input");
    format!("invalid template syntax{position}: {reason}")
}

/// Names `simple` leaves to Tera when they start a path: its literals,
/// operators and statement words.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "elif",
    "endif",
    "for",
    "endfor",
    "set",
    "set_global",
    "true",
    "false",
    "True",
    "False",
    "none",
    "None",
    "loop",
    "filter",
    "endfilter",
    "raw",
    "endraw",
    "break",
    "continue",
    "as",
    "with",
    "macro",
    "endmacro",
    "block",
    "endblock",
    "include",
    "import",
    "extends",
    "self",
    "super",
];

/// A walk of Tera's parsed template, gathering the variables it reads.
///
/// Tera re-exports its AST (`tera::ast`) only `#[doc(hidden)]`: it is not
/// part of its semver promise, so the version is pinned through Cargo.lock
/// and the matches below name every variant, without a wildcard. An upgrade
/// that adds a node or an expression kind stops the build here; one that
/// changes what a kind means fails the tests below.
#[derive(Default)]
struct Walk {
    found: Vec<Reference>,
    /// Names bound by `set`, `for` and macro arguments in the scopes open
    /// at this point of the walk.
    locals: Vec<String>,
    /// Names bound by `set_global`, which outlive the loop they are set in.
    globals: Vec<String>,
}

impl Walk {
    fn nodes(&mut self, nodes: &[Node]) -> Result<(), String> {
        nodes.iter().try_for_each(|node| self.node(node))
    }

    fn node(&mut self, node: &Node) -> Result<(), String> {
        match node {
            Node::VariableBlock(_, expr) => self.expr(expr),
            Node::Set(_, set) => {
                self.expr(&set.value)?;
                if set.global {
                    self.globals.push(bindable("set_global", &set.key)?);
                } else {
                    self.locals.push(bindable("set", &set.key)?);
                }
                Ok(())
            }
            Node::Forloop(_, forloop, _) => {
                self.expr(&forloop.container)?;
                // Variables set in the body, the loop's own among them, end with it.
                let outer = self.locals.len();
                for name in forloop.key.iter().chain([&forloop.value]) {
                    self.locals.push(bindable("for", name)?);
                }
                self.locals.push("loop".to_string());
                self.nodes(&forloop.body)?;
                self.locals.truncate(outer);
                self.nodes(forloop.empty_body.as_deref().unwrap_or_default())
            }
            Node::If(branches, _) => {
                for (_, condition, body) in &branches.conditions {
                    self.expr(condition)?;
                    self.nodes(body)?;
                }
                match &branches.otherwise {
                    Some((_, body)) => self.nodes(body),
                    None => Ok(()),
                }
            }
            Node::FilterSection(_, section, _) => {
                self.arguments(&section.filter.args)?;
                self.nodes(&section.body)
            }
            Node::Block(_, block, _) => self.nodes(&block.body),
            Node::MacroDefinition(_, definition, _) => {
                let mut arguments: Vec<_> = definition.args.iter().collect();
                arguments.sort_by_key(|(name, _)| *name);
                for default in arguments.iter().filter_map(|(_, default)| default.as_ref()) {
                    self.expr(default)?;
                }
                // A macro sees its arguments, not the variables set around it.
                let outer = (
                    std::mem::take(&mut self.locals),
                    std::mem::take(&mut self.globals),
                );
                for (name, _) in arguments {
                    self.locals.push(bindable("macro", name)?);
                }
                self.nodes(&definition.body)?;
                (self.locals, self.globals) = outer;
                Ok(())
            }
            // Text, or names of templates and blocks: a one-off template has
            // no others, so rendering one that names them fails.
            Node::Super
            | Node::Text(_)
            | Node::Raw(..)
            | Node::Comment(..)
            | Node::Break(_)
            | Node::Continue(_)
            | Node::Extends(..)
            | Node::Include(..)
            | Node::ImportMacro(..) => Ok(()),
        }
    }

    /// A value and the arguments of its filters; filter names are not variables.
    fn expr(&mut self, expr: &Expr) -> Result<(), String> {
        self.value(&expr.val)?;
        expr.filters
            .iter()
            .try_for_each(|filter| self.arguments(&filter.args))
    }

    /// Keyword arguments, which Tera keeps in a map: the text's order among
    /// the arguments of one call is lost, so they go by name.
    fn arguments(&mut self, arguments: &HashMap<String, Expr>) -> Result<(), String> {
        let mut arguments: Vec<_> = arguments.iter().collect();
        arguments.sort_by_key(|(name, _)| *name);
        arguments
            .into_iter()
            .try_for_each(|(_, value)| self.expr(value))
    }

    fn value(&mut self, value: &ExprVal) -> Result<(), String> {
        match value {
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => Ok(()),
            ExprVal::Ident(ident) => self.ident(ident),
            ExprVal::Math(MathExpr { lhs, rhs, .. })
            | ExprVal::Logic(LogicExpr { lhs, rhs, .. })
            | ExprVal::In(In { lhs, rhs, .. }) => {
                self.expr(lhs)?;
                self.expr(rhs)
            }
            ExprVal::Test(test) => {
                self.ident(&test.ident)?;
                test.args.iter().try_for_each(|arg| self.expr(arg))
            }
            ExprVal::StringConcat(concat) => {
                concat.values.iter().try_for_each(|value| self.value(value))
            }
            ExprVal::Array(items) => items.iter().try_for_each(|item| self.expr(item)),
            ExprVal::FunctionCall(FunctionCall { name, .. })
            | ExprVal::MacroCall(MacroCall { name, .. }) => Err(format!(
                "`{name}(…)`: templates cannot call functions; read configuration as {{{{env.NAME}}}}"
            )),
        }
    }

    /// A variable as Tera's parser leaves it, one string: `fields.name`,
    /// `fields.tags.0`, `fields.tags[0].name`, `env[fields.key]`. What
    /// follows a subscript is looked up at render time: the reference is
    /// the path before it (`env[…]` reads `env`, as a whole), and a
    /// variable inside the brackets is a reference of its own.
    fn ident(&mut self, ident: &str) -> Result<(), String> {
        let (path, subscripted) = ident.split_at(ident.find('[').unwrap_or(ident.len()));
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        let root = path.first().map_or("", String::as_str);
        if root.starts_with("__") {
            return Err(format!("`{root}` is not available in templates"));
        }
        let is_local = self.locals.iter().chain(&self.globals).any(|l| l == root);
        let reference = Reference(path);
        if !is_local && !self.found.contains(&reference) {
            self.found.push(reference);
        }
        for subscript in subscripts(subscripted) {
            let is_literal = subscript.starts_with(['"', '\'', '`', '-'])
                || subscript.starts_with(|c: char| c.is_ascii_digit());
            if !is_literal {
                self.ident(subscript)?;
            }
        }
        Ok(())
    }
}

/// `name` as a local variable bound by `statement`.
fn bindable(statement: &str, name: &str) -> Result<String, String> {
    if NAMESPACES.contains(&name) {
        return Err(format!(
            "`{statement} {name}` would hide the {name} namespace: use another name"
        ));
    }
    if name.starts_with("__") {
        return Err(format!("`{name}` is not available in templates"));
    }
    Ok(name.to_string())
}

/// The insides of the outermost `[…]` in what follows a variable's path
/// (`[0].name[fields.key]`). Tera's parser keeps a subscripted variable as
/// one string; its strings have no escapes, so a quote ends at the next one.
fn subscripts(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let (mut depth, mut start, mut quote) = (0_usize, 0, None);
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(open), _) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '[') => {
                if depth == 0 {
                    start = at + 1;
                }
                depth += 1;
            }
            (None, ']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    found.push(&text[start..at]);
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dotted(text: &str) -> Vec<String> {
        references(text)
            .unwrap()
            .iter()
            .map(Reference::dotted)
            .collect()
    }

    #[test]
    fn plain_text_has_no_references() {
        assert!(dotted("just text, {braces} and all").is_empty());
    }

    #[test]
    fn finds_every_namespace() {
        assert_eq!(
            dotted("{{fields.name}}-{{ header.owner }} by {{request.user.email}} {{env.DBAAS_URL}}/{{response.db.id}}"),
            ["fields.name", "header.owner", "request.user.email", "env.DBAAS_URL", "response.db.id"]
        );
    }

    #[test]
    fn skips_filters_arguments_literals_and_locals() {
        assert_eq!(
            dotted(
                r#"{{ fields.name | upper | default(value="x.y") }}{% for t in fields.tags %}{{ t }}{% endfor %}{% if fields.ha and not fields.small %}ha{% endif %}"#
            ),
            ["fields.name", "fields.tags", "fields.ha", "fields.small"]
        );
    }

    #[test]
    fn reports_each_reference_once() {
        assert_eq!(dotted("{{fields.a}}{{fields.a}}"), ["fields.a"]);
    }

    #[test]
    fn simple_templates_are_recognised_without_the_parser() {
        assert_eq!(
            simple("db-{{ request.id }}/{{fields.tags.0}}"),
            Some(vec![
                Piece::Text("db-"),
                Piece::Path("request.id"),
                Piece::Text("/"),
                Piece::Path("fields.tags.0"),
            ])
        );
        for complex in [
            "{{ fields.a | upper }}",
            "{{ true }}",
            "{{ 'x' }}",
            "{{- fields.a }}",
            "{% if fields.a %}x{% endif %}",
            "{{ fields.a }",
            "{{ fields..a }}",
            "{{ 0.a }}",
        ] {
            assert_eq!(simple(complex), None, "{complex}");
        }
    }

    #[test]
    fn filtered_templates_read_their_paths() {
        for (text, paths) in [
            ("{{ fields.a | upper }}", vec!["fields.a"]),
            (
                r#"{{fields.v | default(value='')}}-{{ fields.w|default(value="n/a") | lower }}"#,
                vec!["fields.v", "fields.w"],
            ),
            ("{{ fields.n | round(precision=2) }}", vec!["fields.n"]),
            ("{{ fields.a | join(sep=',') }}", vec!["fields.a"]),
            ("{{ fields.a ~ 'x' }}", vec!["fields.a"]),
            ("{% if fields.a %}{% endif %}", vec!["fields.a"]),
        ] {
            assert_eq!(dotted(text), paths, "{text}");
        }
        for text in [
            "{{ fields.a | }}",
            "{{ fields.a | upper( }}",
            "{{ fields.a | default(value=) }}",
            "{{ fields.a | default(value='x) }}",
            "{{ fields.a | default('x') }}",
        ] {
            assert!(references(text).is_err(), "{text}");
        }
    }

    #[test]
    fn quoted_text_is_not_a_reference() {
        assert_eq!(
            dotted(
                r#"{{ fields.a | replace(from="}}", to=fields.b) }}{% if fields.c == "fields.y" %}{{ '{{ fields.x }}' }}{% endif %}"#
            ),
            ["fields.a", "fields.b", "fields.c"]
        );
        assert_eq!(
            dotted("{% raw %}{{ fields.x }}{% endraw %}{# {{ fields.y }} #}{{ fields.z }}"),
            ["fields.z"]
        );
    }

    #[test]
    fn loop_variables_are_local_to_their_loop() {
        assert_eq!(
            dotted(
                "{% for group in fields.groups %}{% for k, v in group.items %}{{ k }}={{ v.name }}{{ loop.index }}{{ fields.c }}{% endfor %}{{ group.id }}{% else %}{{ fields.none }}{% endfor %}{{ group }}"
            ),
            ["fields.groups", "fields.c", "fields.none", "group"]
        );
    }

    #[test]
    fn set_variables_are_local_where_tera_keeps_them() {
        assert_eq!(
            dotted(
                "{% if fields.ha %}{% set n = fields.replicas %}{% else %}{% set n = 1 %}{% endif %}{{ n }}{% set n = n + fields.extra %}"
            ),
            ["fields.ha", "fields.replicas", "fields.extra"]
        );
        // A `set` in a loop ends with it; a `set_global` outlives it.
        let text = "{% for t in fields.tags %}{% set last = t %}{% set_global any = t %}{% endfor %}{{ any }}{{ last }}";
        assert_eq!(dotted(text), ["fields.tags", "last"]);
        // Tera agrees.
        let context =
            tera::Context::from_value(serde_json::json!({"fields": {"tags": ["a"]}})).unwrap();
        let mut tera = tera::Tera::default();
        assert_eq!(
            tera.render_str(
                "{% for t in fields.tags %}{% set_global any = t %}{% endfor %}{{ any }}",
                &context
            )
            .unwrap(),
            "a"
        );
        assert!(tera.render_str(text, &context).is_err());
    }

    #[test]
    fn every_expression_kind_is_walked() {
        assert_eq!(
            dotted(
                r#"{% if fields.a is defined and fields.b in [fields.c, "x"] and not fields.d + 1 > 2 %}{{ fields.e ~ "-" ~ fields.f }}{% elif fields.g is starting_with(fields.h) %}{% filter truncate(length=fields.i) %}{{ fields.j | default(value=fields.k) }}{% endfilter %}{% endif %}"#
            ),
            [
                "fields.a", "fields.b", "fields.c", "fields.d", "fields.e", "fields.f", "fields.g",
                "fields.h", "fields.i", "fields.j", "fields.k"
            ]
        );
        // Arguments of one call go by name: Tera keeps them in a map.
        assert_eq!(
            dotted("{{ fields.a | replace(to=fields.z, from=fields.y) }}"),
            ["fields.a", "fields.y", "fields.z"]
        );
        assert_eq!(
            dotted("{% macro m(a, b=2) %}{{ a }}{{ b }}{{ t }}{{ fields.x }}{% endmacro m %}{% set t = 1 %}{{ t }}"),
            ["t", "fields.x"]
        );
    }

    #[test]
    fn a_subscript_reads_the_path_before_it() {
        assert_eq!(
            dotted(
                r#"{{ fields.tags[0].name }}{{ fields.map[fields.keys["a]"]] }}{{ env["DBAAS_TOKEN"] }}{{ fields.tags.1 }}"#
            ),
            [
                "fields.tags",
                "fields.map",
                "fields.keys",
                "env",
                "fields.tags.1"
            ]
        );
    }

    #[test]
    fn what_reaches_past_the_namespaces_is_refused() {
        for (text, message) in [
            (
                "{{ __tera_context | json_encode }}",
                "`__tera_context` is not available",
            ),
            ("{{ __tera_context }}", "`__tera_context` is not available"),
            ("{% set __x = 1 %}", "`__x` is not available"),
            (
                "{{ fields[__tera_context] }}",
                "`__tera_context` is not available",
            ),
            (
                r#"{{ fields.a | default(value=get_env(name="HOME")) }}"#,
                "`get_env(…)`: templates cannot call functions",
            ),
            (
                "{% for i in range(end=3) %}{% endfor %}",
                "`range(…)`: templates cannot call functions",
            ),
            (
                "{% macro m() %}{% endmacro m %}{{ self::m() }}",
                "`m(…)`: templates cannot call functions",
            ),
            (
                "{% set_global env = 1 %}",
                "`set_global env` would hide the env namespace",
            ),
            (
                "{% for k, env in fields %}{% endfor %}",
                "`for env` would hide the env namespace",
            ),
            (
                "{% for fields in env %}{% endfor %}",
                "`for fields` would hide the fields namespace",
            ),
        ] {
            let err = references(text).unwrap_err();
            assert!(err.starts_with(message), "{text}: {err}");
        }
    }

    #[test]
    fn a_syntax_error_is_explained() {
        let err = references("{{ fields.name ").unwrap_err();
        assert!(err.starts_with("invalid template syntax"), "{err}");
        assert!(references("{% if fields.x %}unclosed").is_err());
    }
}
