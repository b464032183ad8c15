//! Who may change the system. The D-Bus policy lets root and group `tutor` (the UI) call
//! tutord at all; the methods that change the system (`SelectModel`, `Rebenchmark`,
//! `SetLogLevel`) also check the caller: root, tutord's own user, or a member of `[daemon]
//! admin_group`. The caller's uid and groups come from the bus daemon
//! (`GetConnectionCredentials` of the message's sender), not from anything the caller says.

use std::ffi::CString;

use zbus::message::Header;

use super::TutorError;

/// Refuses `method` unless the sender of `header` is allowed to change the system.
pub(crate) async fn require_admin(
    conn: &zbus::Connection,
    header: &Header<'_>,
    admin_group: &str,
    method: &str,
) -> Result<(), TutorError> {
    let sender = header
        .sender()
        .ok_or_else(|| TutorError::AccessDenied(format!("{method}: the message has no sender")))?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let creds = dbus
        .get_connection_credentials(sender.clone().into())
        .await
        .map_err(|e| {
            TutorError::AccessDenied(format!("{method}: cannot tell who {sender} is: {e}"))
        })?;
    let uid = creds.unix_user_id();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    if uid == Some(0) || uid == Some(own) {
        return Ok(());
    }
    let group = (!admin_group.is_empty())
        .then(|| group_id(admin_group))
        .flatten();
    let groups = creds.unix_group_ids().cloned().unwrap_or_default();
    if let Some(gid) = group
        && groups.contains(&gid)
    {
        return Ok(());
    }
    let who = uid.map_or("an unknown user".to_string(), |u| format!("uid {u}"));
    let allowed = if admin_group.is_empty() {
        "root only: set [daemon] admin_group to admit a group".to_string()
    } else if group.is_none() {
        format!("root or group '{admin_group}', which does not exist on this system")
    } else {
        format!("root or group '{admin_group}'")
    };
    tracing::warn!("{method} refused to {who} ({sender}): {allowed}");
    Err(TutorError::AccessDenied(format!(
        "{method} changes the system and is refused to {who}: {allowed}"
    )))
}

/// The id of group `name` through the system's name service (files, sssd, …).
fn group_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    // SAFETY: `group` is plain data (pointers and an integer): all zeroes is a valid value,
    // which getgrnam_r overwrites.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `grp` and
    // `buf` outlive it and `buf.len()` is its size; `out` is set to `&grp` or null.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_looked_up_by_name() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("tutord-no-such-group"), None);
        assert_eq!(group_id("bad\0name"), None);
    }
}
