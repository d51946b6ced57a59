"""Database access for notes."""

import sqlite3

DB_PATH = "notes.db"


def connect():
    return sqlite3.connect(DB_PATH)


def find_notes(term):
    conn = connect()
    query = "SELECT id, title FROM notes WHERE title LIKE '%" + term + "%'"
    return conn.execute(query).fetchall()


def find_notes_safe(term):
    conn = connect()
    return conn.execute(
        "SELECT id, title FROM notes WHERE title LIKE ?", (f"%{term}%",)
    ).fetchall()


def delete_note(note_id):
    conn = connect()
    cur = conn.cursor()
    cur.execute("DELETE FROM notes WHERE id = %s" % note_id)
    conn.commit()


def delete_note_safe(note_id):
    conn = connect()
    conn.execute("DELETE FROM notes WHERE id = ?", (int(note_id),))
    conn.commit()


def count_notes():
    conn = connect()
    return conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0]
