/** The router's list of open sessions: order, unlinking, and a walk that closes as it goes. */
import { expect, test } from "bun:test";
import { type Listed, SessionList } from "../../src/proxy/session-list.ts";

class Item implements Listed<Item> {
  listPrev: Item | null = null;
  listNext: Item | null = null;
  constructor(readonly name: string) {}
}

const names = (list: SessionList<Item>) => [...list].map((item) => item.name);

test("keeps items in the order they were added, and unlinks any of them", () => {
  const list = new SessionList<Item>();
  const [a, b, c, d] = ["a", "b", "c", "d"].map((name) => new Item(name)) as [Item, Item, Item, Item];
  for (const item of [a, b, c, d]) list.add(item);
  expect(names(list)).toEqual(["a", "b", "c", "d"]);
  expect(list.size).toBe(4);

  list.delete(b); // middle
  expect(names(list)).toEqual(["a", "c", "d"]);
  list.delete(a); // head
  list.delete(d); // tail
  expect(names(list)).toEqual(["c"]);
  expect(list.first).toBe(c);
  expect(list.size).toBe(1);
  // An unlinked item points at nothing (a closed session keeps no open one reachable).
  for (const item of [a, b, d]) expect([item.listPrev, item.listNext]).toEqual([null, null]);

  list.delete(c);
  expect(names(list)).toEqual([]);
  expect(list.first).toBeNull();
  list.add(b);
  expect(names(list)).toEqual(["b"]);
});

test("a walk may delete the item it is on, as a sweep that closes sessions does", () => {
  const list = new SessionList<Item>();
  const items = Array.from({ length: 6 }, (_, i) => new Item(String(i)));
  for (const item of items) list.add(item);
  const seen: string[] = [];
  for (const item of list) {
    seen.push(item.name);
    if (Number(item.name) % 2 === 0) list.delete(item);
  }
  expect(seen).toEqual(["0", "1", "2", "3", "4", "5"]);
  expect(names(list)).toEqual(["1", "3", "5"]);
  expect(list.size).toBe(3);
});
