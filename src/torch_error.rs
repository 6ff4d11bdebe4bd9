//! libtorch's errors as one line.
//!
//! tch's non-`f_` methods panic on libtorch's errors (out of memory, a failed check)
//! with `called Result::unwrap() on an Err value: Torch("…")`, libtorch's whole
//! multi-line report Debug-escaped inside. The command line and the Python binding
//! both catch such panics and show only what the user needs: libtorch's first line.

/// libtorch's own first line, where `message` is a tch error's panic message.
pub fn torch_message(message: &str) -> Option<String> {
    let at = message.find("Torch(\"")?;
    let rest = &message[at + "Torch(\"".len()..];
    // tch prints libtorch's message Debug-escaped: its lines end in a literal \n.
    let end = rest
        .find("\\n")
        .or_else(|| rest.rfind("\")"))
        .unwrap_or(rest.len());
    Some(rest[..end].replace("\\\"", "\""))
}

extern "C" {
    fn rnnlm_free_error(message: *mut std::ffi::c_char);
}

/// The first line of the message that a call into `csrc/` returned, or `None` for
/// its success (a null pointer); frees the message.
///
/// # Safety
/// `error` is null or a string that a `csrc/` binding allocated and nothing else
/// holds.
pub unsafe fn binding_error(error: *mut std::ffi::c_char) -> Option<String> {
    if error.is_null() {
        return None;
    }
    // SAFETY: the caller's promise: a NUL-terminated string from strdup.
    let message = unsafe { std::ffi::CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    unsafe { rnnlm_free_error(error) };
    Some(message.lines().next().unwrap_or("").trim().to_string())
}

/// Whether an error's text says that memory ran out (on the CPU or a GPU).
pub fn is_out_of_memory(text: &str) -> bool {
    let text = text.to_lowercase();
    text.contains("out of memory")
        || text.contains("not enough memory")
        || text.contains("can't allocate memory")
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_of_an_escaped_libtorch_report_is_kept() {
        let panic = r#"called `Result::unwrap()` on an `Err` value: Torch("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes.\nException raised from \"alloc\" at c10/core")"#;
        assert_eq!(
            torch_message(panic).as_deref(),
            Some("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes.")
        );
        assert!(is_out_of_memory(&torch_message(panic).unwrap()));
        assert_eq!(torch_message("index out of range"), None);
    }
}
