//! The languages the index parses: which files are which, their grammars and the queries that find definitions and
//! calls in them.

use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

/// A language the index parses with tree-sitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// `.py`, `.pyi`
    Python,
    /// `.js`, `.jsx`, `.mjs`, `.cjs`
    JavaScript,
    /// `.ts`, `.mts`, `.cts`
    TypeScript,
    /// `.tsx`
    Tsx,
    /// `.rs`
    Rust,
    /// `.go`
    Go,
    /// `.java`
    Java,
    /// `.c`, `.h`
    C,
    /// `.cc`, `.cpp`, `.cxx`, `.hpp`, `.hh`, `.hxx`
    Cpp,
}

/// What the index does with a file, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// Parsed: definitions, references, calls and ranked chunks.
    Code(Lang),
    /// Text worth searching (docs, config): ranked chunks only.
    Text,
}

/// Extensions of text files that are searched but not parsed.
const TEXT_EXTENSIONS: &[&str] = &[
    "md", "markdown", "rst", "txt", "toml", "yaml", "yml", "cfg", "ini", "sh", "bash", "zsh",
    "sql", "html", "css", "scss", "proto", "graphql", "gradle", "cmake", "kt", "kts", "rb", "php",
    "swift", "scala", "lua", "cs", "ex", "exs", "hs", "ml", "vue", "svelte",
];

/// Extension-less files searched as text.
const TEXT_NAMES: &[&str] = &[
    "Makefile",
    "Dockerfile",
    "Justfile",
    "CMakeLists.txt",
    "README",
    "LICENSE",
];

pub(crate) fn classify(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_str()?;
    if TEXT_NAMES.contains(&name) {
        return Some(FileKind::Text);
    }
    let ext = path.extension()?.to_str()?;
    let lang = match ext {
        "py" | "pyi" => Lang::Python,
        "js" | "jsx" | "mjs" | "cjs" => Lang::JavaScript,
        "ts" | "mts" | "cts" => Lang::TypeScript,
        "tsx" => Lang::Tsx,
        "rs" => Lang::Rust,
        "go" => Lang::Go,
        "java" => Lang::Java,
        "c" | "h" => Lang::C,
        "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" => Lang::Cpp,
        _ if TEXT_EXTENSIONS.contains(&ext) => return Some(FileKind::Text),
        _ => return None,
    };
    Some(FileKind::Code(lang))
}

impl Lang {
    /// Every language, in a fixed order.
    pub const ALL: [Lang; 9] = [
        Self::Python,
        Self::JavaScript,
        Self::TypeScript,
        Self::Tsx,
        Self::Rust,
        Self::Go,
        Self::Java,
        Self::C,
        Self::Cpp,
    ];

    /// The language's name, as status reports show it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::JavaScript => "javascript",
            Self::TypeScript => "typescript",
            Self::Tsx => "tsx",
            Self::Rust => "rust",
            Self::Go => "go",
            Self::Java => "java",
            Self::C => "c",
            Self::Cpp => "cpp",
        }
    }

    pub(crate) fn grammar(self) -> tree_sitter::Language {
        match self {
            Self::Python => tree_sitter_python::LANGUAGE.into(),
            Self::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Self::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Self::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Self::Rust => tree_sitter_rust::LANGUAGE.into(),
            Self::Go => tree_sitter_go::LANGUAGE.into(),
            Self::Java => tree_sitter_java::LANGUAGE.into(),
            Self::C => tree_sitter_c::LANGUAGE.into(),
            Self::Cpp => tree_sitter_cpp::LANGUAGE.into(),
        }
    }

    /// The query that finds definitions (`@def.KIND` on the whole node, `@name` on its name) and scopes that only
    /// contain definitions (`@scope`, e.g. a Rust `impl`). Calls are found by the walk over every node that finds
    /// references ([`Lang::call_kinds`]): matching them with a query costs more than the whole walk.
    pub(crate) fn query(self) -> &'static str {
        match self {
            Self::Python => PYTHON,
            Self::JavaScript => JAVASCRIPT,
            Self::TypeScript | Self::Tsx => TYPESCRIPT,
            Self::Rust => RUST,
            Self::Go => GO,
            Self::Java => JAVA,
            Self::C => C,
            Self::Cpp => CPP,
        }
    }

    /// The node kinds that are calls (or `new`, or a macro invocation).
    pub(crate) fn call_kinds(self) -> &'static [&'static str] {
        match self {
            Self::Python => &["call"],
            Self::JavaScript | Self::TypeScript | Self::Tsx => {
                &["call_expression", "new_expression"]
            }
            Self::Rust => &["call_expression", "macro_invocation"],
            Self::Go | Self::C | Self::Cpp => &["call_expression"],
            Self::Java => &["method_invocation", "object_creation_expression"],
        }
    }

    /// The node kinds that are identifiers: every one outside a definition's name is a reference.
    pub(crate) fn identifier_kinds(self) -> &'static [&'static str] {
        match self {
            Self::Python => &["identifier"],
            Self::JavaScript => &[
                "identifier",
                "property_identifier",
                "shorthand_property_identifier",
            ],
            Self::TypeScript | Self::Tsx => &[
                "identifier",
                "property_identifier",
                "shorthand_property_identifier",
                "type_identifier",
            ],
            Self::Rust | Self::C => &["identifier", "type_identifier", "field_identifier"],
            Self::Go => &[
                "identifier",
                "type_identifier",
                "field_identifier",
                "package_identifier",
            ],
            Self::Java => &["identifier", "type_identifier"],
            Self::Cpp => &[
                "identifier",
                "type_identifier",
                "field_identifier",
                "namespace_identifier",
            ],
        }
    }
}

const PYTHON: &str = r"
(class_definition name: (identifier) @name) @def.class
(function_definition name: (identifier) @name) @def.function
(module (expression_statement (assignment left: (identifier) @name) @def.constant))
";

const JAVASCRIPT: &str = r"
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(class_declaration name: (identifier) @name) @def.class
(method_definition name: (property_identifier) @name) @def.method
(lexical_declaration (variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)])) @def.function
(variable_declaration (variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)])) @def.function
";

const TYPESCRIPT: &str = r"
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(function_signature name: (identifier) @name) @def.function
(class_declaration name: (type_identifier) @name) @def.class
(abstract_class_declaration name: (type_identifier) @name) @def.class
(method_definition name: (property_identifier) @name) @def.method
(method_signature name: (property_identifier) @name) @def.method
(abstract_method_signature name: (property_identifier) @name) @def.method
(interface_declaration name: (type_identifier) @name) @def.interface
(type_alias_declaration name: (type_identifier) @name) @def.type
(enum_declaration name: (identifier) @name) @def.enum
(lexical_declaration (variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)])) @def.function
";

const RUST: &str = r"
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(struct_item name: (type_identifier) @name) @def.struct
(union_item name: (type_identifier) @name) @def.struct
(enum_item name: (type_identifier) @name) @def.enum
(trait_item name: (type_identifier) @name) @def.trait
(type_item name: (type_identifier) @name) @def.type
(mod_item name: (identifier) @name) @def.module
(macro_definition name: (identifier) @name) @def.macro
(const_item name: (identifier) @name) @def.constant
(static_item name: (identifier) @name) @def.constant
(impl_item type: [(type_identifier) @name (generic_type type: (type_identifier) @name) (scoped_type_identifier name: (type_identifier) @name)]) @scope
";

const GO: &str = r"
(function_declaration name: (identifier) @name) @def.function
(method_declaration name: (field_identifier) @name) @def.method
(type_alias name: (type_identifier) @name) @def.type
(type_spec name: (type_identifier) @name type: (struct_type)) @def.struct
(type_spec name: (type_identifier) @name type: (interface_type)) @def.interface
(type_spec name: (type_identifier) @name type: [(type_identifier) (qualified_type) (function_type) (map_type) (slice_type) (pointer_type) (generic_type) (array_type) (channel_type)]) @def.type
";

const JAVA: &str = r"
(class_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.enum
(record_declaration name: (identifier) @name) @def.class
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.method
";

const C: &str = r"
(function_definition declarator: (function_declarator declarator: (identifier) @name)) @def.function
(function_definition declarator: (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))) @def.function
(declaration declarator: (function_declarator declarator: (identifier) @name)) @def.declaration
(struct_specifier name: (type_identifier) @name body: (_)) @def.struct
(union_specifier name: (type_identifier) @name body: (_)) @def.struct
(enum_specifier name: (type_identifier) @name body: (_)) @def.enum
(type_definition declarator: (type_identifier) @name) @def.type
(preproc_def name: (identifier) @name) @def.macro
(preproc_function_def name: (identifier) @name) @def.macro
";

const CPP: &str = r"
(function_definition declarator: (function_declarator declarator: [(identifier) (field_identifier)] @name)) @def.function
(function_definition declarator: (function_declarator declarator: (qualified_identifier name: (identifier) @name))) @def.method
(function_definition declarator: (function_declarator declarator: (qualified_identifier name: (qualified_identifier name: (identifier) @name)))) @def.method
(function_definition declarator: (reference_declarator (function_declarator declarator: [(identifier) (field_identifier)] @name))) @def.function
(function_definition declarator: (pointer_declarator declarator: (function_declarator declarator: [(identifier) (field_identifier)] @name))) @def.function
(declaration declarator: (function_declarator declarator: (identifier) @name)) @def.declaration
(field_declaration declarator: (function_declarator declarator: (field_identifier) @name)) @def.declaration
(class_specifier name: (type_identifier) @name body: (_)) @def.class
(struct_specifier name: (type_identifier) @name body: (_)) @def.struct
(union_specifier name: (type_identifier) @name body: (_)) @def.struct
(enum_specifier name: (type_identifier) @name body: (_)) @def.enum
(type_definition declarator: (type_identifier) @name) @def.type
(namespace_definition name: (namespace_identifier) @name) @def.namespace
(preproc_def name: (identifier) @name) @def.macro
(preproc_function_def name: (identifier) @name) @def.macro
";
