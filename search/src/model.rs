//! What the index answers with: definitions, references, ranked hits, call-graph edges, its status.

use serde::Deserialize;
use serde::Serialize;

/// What a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    /// A free function (or a function nested in one).
    Function,
    /// A function inside a class, struct, trait, interface or `impl`.
    Method,
    /// A class.
    Class,
    /// A struct or union.
    Struct,
    /// An enum.
    Enum,
    /// An interface.
    Interface,
    /// A Rust trait.
    Trait,
    /// A type alias or `typedef`.
    Type,
    /// A module (Rust `mod`, TypeScript `module`).
    Module,
    /// A C++ namespace.
    Namespace,
    /// A macro.
    Macro,
    /// A module-level constant or static.
    Constant,
    /// A function declared without a body (a C prototype, a C++ member declaration).
    Declaration,
}

impl SymbolKind {
    pub(crate) fn from_capture(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "function" => Self::Function,
            "method" => Self::Method,
            "class" => Self::Class,
            "struct" => Self::Struct,
            "enum" => Self::Enum,
            "interface" => Self::Interface,
            "trait" => Self::Trait,
            "type" => Self::Type,
            "module" => Self::Module,
            "namespace" => Self::Namespace,
            "macro" => Self::Macro,
            "constant" => Self::Constant,
            "declaration" => Self::Declaration,
            _ => return None,
        })
    }

    /// Whether functions inside it are its methods.
    pub(crate) fn holds_methods(self) -> bool {
        matches!(
            self,
            Self::Class | Self::Struct | Self::Enum | Self::Interface | Self::Trait
        )
    }

    /// Its name as results show it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Method => "method",
            Self::Class => "class",
            Self::Struct => "struct",
            Self::Enum => "enum",
            Self::Interface => "interface",
            Self::Trait => "trait",
            Self::Type => "type",
            Self::Module => "module",
            Self::Namespace => "namespace",
            Self::Macro => "macro",
            Self::Constant => "constant",
            Self::Declaration => "declaration",
        }
    }
}

/// A definition: where a name is defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Symbol {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: SymbolKind,
    /// The class, struct, trait, `impl` type or function it is defined in.
    pub container: Option<String>,
    /// Its file, relative to the work dir, `/`-separated.
    pub file: String,
    /// First line (1-based).
    pub line: u32,
    /// Last line.
    pub end_line: u32,
    /// Its first line of source, trimmed: the signature.
    pub signature: String,
}

impl Symbol {
    /// `Container.name`, or the name alone.
    #[must_use]
    pub fn qualified(&self) -> String {
        match &self.container {
            Some(c) => format!("{c}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Whether a reference calls the name or only mentions it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    /// A call (or `new`, or a macro invocation).
    Call,
    /// Any other use: an import, a type, a value.
    Reference,
}

/// A use of a name outside its definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The name used.
    pub name: String,
    /// Its file.
    pub file: String,
    /// Its line (1-based).
    pub line: u32,
    /// A call or another use.
    pub kind: RefKind,
    /// The definition the use is in (`Container.name`), if any.
    pub symbol: Option<String>,
    /// The line's source, trimmed.
    pub text: String,
}

/// One result of a ranked search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Its file.
    pub file: String,
    /// First line of the matching chunk.
    pub start_line: u32,
    /// Last line of the matching chunk.
    pub end_line: u32,
    /// The definition the chunk is (`Container.name`), if it is one.
    pub symbol: Option<String>,
    /// That definition's kind.
    pub kind: Option<SymbolKind>,
    /// The relevance score (higher is better; comparable within one answer only).
    pub score: f32,
    /// The chunk's first lines.
    pub snippet: String,
}

/// One edge of the call graph, as a trace returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEdge {
    /// The calling definition (`Container.name`), or `<module>` for top-level code.
    pub caller: String,
    /// The name called.
    pub callee: String,
    /// Where the call is.
    pub file: String,
    /// Its line.
    pub line: u32,
    /// How many calls away from the traced name (1: a direct caller or callee).
    pub depth: u32,
    /// Where the callee is defined (`file:line`), when the index knows it.
    pub defined_at: Option<String>,
    /// The call's line of source, trimmed.
    pub text: String,
}

/// A ranked repo map: files and their most important definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoMap {
    /// The map as the model reads it.
    pub text: String,
    /// The files shown, most important first.
    pub files: Vec<String>,
    /// How many files the index holds in all.
    pub total_files: usize,
}

/// Why a file is in the work dir but not in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// It has NUL bytes.
    Binary,
    /// Over the size limit.
    TooLarge,
    /// Lines too long to be source a person wrote (minified or generated).
    Minified,
    /// Not UTF-8.
    NotUtf8,
}
