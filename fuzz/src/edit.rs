//! Edits to a list of named parameters: how targets explore around a request that succeeds.

use arbitrary::Arbitrary;

/// One change to a parameter list.
#[derive(Arbitrary, Debug)]
pub enum Edit<N, V> {
    /// Replace the first parameter of this name, or add it.
    Set(N, V),
    /// Drop every parameter of this name.
    Remove(N),
    /// Add one more, even if the name is there already.
    Append(N, V),
}

/// `base` with `edits` applied in order; `key` gives a name's wire spelling.
pub fn apply<N: Clone, V: Clone>(
    mut params: Vec<(N, V)>,
    edits: &[Edit<N, V>],
    key: impl Fn(&N) -> &str,
) -> Vec<(N, V)> {
    for edit in edits {
        match edit {
            Edit::Set(n, v) => match params.iter_mut().find(|(k, _)| key(k) == key(n)) {
                Some(slot) => slot.1 = v.clone(),
                None => params.push((n.clone(), v.clone())),
            },
            Edit::Remove(n) => params.retain(|(k, _)| key(k) != key(n)),
            Edit::Append(n, v) => params.push((n.clone(), v.clone())),
        }
    }
    params
}
