//! Problem generators with exact references (see the data issue).
