// Package files tails log files into the outbox, exactly once: the read
// position of a file is stored in the same transaction as the records read
// from it (an outbox mark), so that kill -9 or a power cut neither loses nor
// repeats a line in the outbox.
//
// A file is known by device + inode, and a fingerprint of its first bytes
// (up to fpMax, grown as the file grows) tells a truncated or reused inode
// from the file that was read. The tailer owns every tracked file: one
// goroutine (Run) discovers files (globs, inotify, a rescan) and hands a
// file that has work to one of a few workers; a worker reads from the
// committed offset, frames lines into records (text, json, cri, multiline),
// and commits them with the file's new mark. A file is in one worker's hands
// at a time, so its marks are written in order.
//
// Rotation: a file renamed out of the globs or deleted is read to its end
// and closed once it has not grown for rotate_wait; a renamed file that
// still matches is the same file. copytruncate: a size below the offset or
// a changed fingerprint means truncated (read from 0); the copy is known by
// the fingerprint of the content it copied and read only from where the
// original was left.
package files
