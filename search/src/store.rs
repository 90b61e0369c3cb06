//! The index's files and their parsed contents, and the maps built from them: names to definitions, uses and calls,
//! words to the chunks that contain them.

use crate::FxMap;

use serde::Deserialize;
use serde::Serialize;

use crate::lang::Lang;
use crate::model::SkipReason;
use crate::parse::Call;
use crate::parse::Def;
use crate::parse::RefTable;

/// What tells a changed file from an unchanged one without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) inode: u64,
}

/// One scored chunk of a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub(crate) start: u32,
    pub(crate) end: u32,
    /// The definition (index into the file's `defs`) the chunk is.
    pub(crate) symbol: Option<u32>,
    /// Word ids and how often each occurs.
    pub(crate) terms: Vec<(u32, u16)>,
    /// Words in all.
    pub(crate) len: u32,
    /// A hash of its text: the key of its embedding.
    pub(crate) hash: u64,
}

/// One file of the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    pub(crate) path: String,
    pub(crate) fp: Fingerprint,
    /// Its modification time was too close to the scan that read it to trust: read it again next time.
    pub(crate) racy: bool,
    pub(crate) lang: Option<Lang>,
    pub(crate) skipped: Option<SkipReason>,
    pub(crate) defs: Vec<Def>,
    pub(crate) calls: Vec<Call>,
    pub(crate) refs: RefTable,
    pub(crate) chunks: Vec<Chunk>,
}

/// Word ids, stable for the life of a stored index.
#[derive(Debug, Default)]
pub(crate) struct Terms {
    ids: FxMap<String, u32>,
    pub(crate) names: Vec<String>,
}

impl Terms {
    pub(crate) fn from_names(names: Vec<String>) -> Self {
        let ids = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((n.clone(), u32::try_from(i).ok()?)))
            .collect();
        Self { ids, names }
    }

    pub(crate) fn id(&mut self, word: &str) -> u32 {
        if let Some(id) = self.ids.get(word) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(word.to_owned());
        self.ids.insert(word.to_owned(), id);
        id
    }

    pub(crate) fn get(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }
}

impl Tables {
    /// Drops the words no chunk has any more (edited and deleted files leave theirs behind) and numbers the rest
    /// again, in every chunk and posting.
    pub(crate) fn compact_terms(&mut self) {
        let mut remap: Vec<u32> = vec![u32::MAX; self.terms.names.len()];
        let mut names = Vec::with_capacity(self.postings.len());
        for (old, name) in self.terms.names.iter().enumerate() {
            let Ok(id) = u32::try_from(old) else { break };
            if self.postings.contains_key(&id) {
                remap[old] = u32::try_from(names.len()).unwrap_or(u32::MAX);
                names.push(name.clone());
            }
        }
        let new_id = |old: u32| remap.get(old as usize).copied().unwrap_or(u32::MAX);
        for file in self.files.iter_mut().flatten() {
            for chunk in &mut file.chunks {
                for term in &mut chunk.terms {
                    term.0 = new_id(term.0);
                }
                chunk.terms.sort_unstable();
            }
        }
        self.postings = std::mem::take(&mut self.postings)
            .into_iter()
            .map(|(term, list)| (new_id(term), list))
            .collect();
        self.terms = Terms::from_names(names);
        self.generation += 1;
    }
}

/// A posting: a chunk (file id, chunk index) that has the word, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Posting {
    pub(crate) file: u32,
    pub(crate) chunk: u32,
    pub(crate) tf: u16,
}

/// Files by id, and every map derived from them.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) files: Vec<Option<FileEntry>>,
    pub(crate) free: Vec<u32>,
    pub(crate) by_path: FxMap<String, u32>,
    pub(crate) terms: Terms,
    /// Name → (file, def index).
    pub(crate) defs: FxMap<String, Vec<(u32, u32)>>,
    /// Name → files that use it.
    pub(crate) uses: FxMap<String, Vec<u32>>,
    /// Callee name → files that call it.
    pub(crate) callers: FxMap<String, Vec<u32>>,
    pub(crate) postings: FxMap<u32, Vec<Posting>>,
    pub(crate) chunk_count: u64,
    pub(crate) total_len: u64,
    /// Bumped by every change: caches derived from the tables compare it.
    pub(crate) generation: u64,
}

fn remove_id(map: &mut FxMap<String, Vec<u32>>, key: &str, id: u32) {
    if let Some(list) = map.get_mut(key) {
        list.retain(|f| *f != id);
        if list.is_empty() {
            map.remove(key);
        }
    }
}

impl Tables {
    pub(crate) fn file(&self, id: u32) -> Option<&FileEntry> {
        self.files.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, &FileEntry)> {
        self.files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((u32::try_from(i).ok()?, f.as_ref()?)))
    }

    /// Adds (or replaces) a file.
    pub(crate) fn insert(&mut self, entry: FileEntry) {
        self.remove(&entry.path);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.files.push(None);
                u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
            }
        };
        for (i, def) in entry.defs.iter().enumerate() {
            let at = u32::try_from(i).unwrap_or(u32::MAX);
            self.defs
                .entry(def.name.clone())
                .or_default()
                .push((id, at));
        }
        for (name, _) in entry.refs.iter() {
            match self.uses.get_mut(name) {
                Some(files) => files.push(id),
                None => {
                    self.uses.insert(name.to_owned(), vec![id]);
                }
            }
        }
        let mut called: Vec<&str> = entry.calls.iter().map(|c| c.callee.as_str()).collect();
        called.sort_unstable();
        called.dedup();
        for name in called {
            self.callers.entry(name.to_owned()).or_default().push(id);
        }
        for (c, chunk) in entry.chunks.iter().enumerate() {
            let chunk_id = u32::try_from(c).unwrap_or(u32::MAX);
            for &(term, tf) in &chunk.terms {
                self.postings.entry(term).or_default().push(Posting {
                    file: id,
                    chunk: chunk_id,
                    tf,
                });
            }
            self.chunk_count += 1;
            self.total_len += u64::from(chunk.len);
        }
        self.by_path.insert(entry.path.clone(), id);
        self.files[id as usize] = Some(entry);
        self.generation += 1;
    }

    /// Removes a file; whether it was there.
    pub(crate) fn remove(&mut self, path: &str) -> bool {
        let Some(id) = self.by_path.remove(path) else {
            return false;
        };
        let Some(entry) = self.files.get_mut(id as usize).and_then(Option::take) else {
            return false;
        };
        for def in &entry.defs {
            if let Some(list) = self.defs.get_mut(&def.name) {
                list.retain(|(f, _)| *f != id);
                if list.is_empty() {
                    self.defs.remove(&def.name);
                }
            }
        }
        for (name, _) in entry.refs.iter() {
            remove_id(&mut self.uses, name, id);
        }
        for call in &entry.calls {
            remove_id(&mut self.callers, &call.callee, id);
        }
        for chunk in &entry.chunks {
            for &(term, _) in &chunk.terms {
                if let Some(list) = self.postings.get_mut(&term) {
                    list.retain(|p| p.file != id);
                    if list.is_empty() {
                        self.postings.remove(&term);
                    }
                }
            }
            self.chunk_count = self.chunk_count.saturating_sub(1);
            self.total_len = self.total_len.saturating_sub(u64::from(chunk.len));
        }
        self.free.push(id);
        self.generation += 1;
        true
    }
}
