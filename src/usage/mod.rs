//! Usage records (话单): parsing, validation, the journal and upload.
