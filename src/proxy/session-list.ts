/**
 * The open sessions of a router, in the order they opened: a doubly-linked list through the
 * sessions themselves. Opening and closing a session is a few pointer writes; a `Set` paid a
 * hash per add and delete and rebuilt its table as sessions came and went (bench: about 500
 * instructions per session, see docs/benchmarks.md).
 *
 * A session is in at most one list, once; `delete` unlinks it and clears its links, so a closed
 * session holds no pointer to an open one (the collector does not keep one alive through it).
 */

/** The links a listed item carries; only SessionList writes them. */
export interface Listed<T> {
  listPrev: T | null;
  listNext: T | null;
}

export class SessionList<T extends Listed<T>> implements Iterable<T> {
  size = 0;
  private head: T | null = null;
  private tail: T | null = null;

  /** The oldest item, to walk the list with `listNext` (the sweep; no iterator object). */
  get first(): T | null {
    return this.head;
  }

  add(item: T): void {
    item.listPrev = this.tail;
    item.listNext = null;
    if (this.tail === null) this.head = item;
    else this.tail.listNext = item;
    this.tail = item;
    this.size++;
  }

  /** Unlinks `item`, which must be in this list. */
  delete(item: T): void {
    const { listPrev: prev, listNext: next } = item;
    if (prev === null) this.head = next;
    else prev.listNext = next;
    if (next === null) this.tail = prev;
    else next.listPrev = prev;
    item.listPrev = null;
    item.listNext = null;
    this.size--;
  }

  /** Oldest first. The item yielded may be deleted before the walk goes on; another may not. */
  *[Symbol.iterator](): Iterator<T> {
    let item = this.head;
    while (item !== null) {
      const next = item.listNext;
      yield item;
      item = next;
    }
  }
}
