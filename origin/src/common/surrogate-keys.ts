/**
 * Surrogate keys (cache tags): the `Surrogate-Key` header on uploads and responses and
 * the `tags` of a purge share these rules.
 */

export const MAX_TAG_LENGTH = 128;
export const MAX_TAGS_PER_ASSET = 64;

// Printable ASCII without the comma: edges split Surrogate-Key on spaces and
// commas alike, so a tag with a comma would be indexed as two and never purged.
const TAG = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Returns a reason when the tag is not acceptable, or undefined. */
export function checkTag(tag: string): string | undefined {
  if (tag.length === 0) {
    return 'tag is empty';
  }
  if (tag.length > MAX_TAG_LENGTH) {
    return `tag is longer than ${MAX_TAG_LENGTH} characters`;
  }
  if (!TAG.test(tag)) {
    return 'tag must contain only printable ASCII characters (0x21-0x7E), no spaces or commas';
  }
  return undefined;
}

/**
 * Parses a `Surrogate-Key` header value (space-separated tags). Duplicates are dropped,
 * first occurrence order is kept. Returns the tags or a reason.
 */
export function parseSurrogateKeyHeader(value: string): { tags: string[] } | { reason: string } {
  const parts = value.split(' ').filter((part) => part !== '');
  const tags: string[] = [];
  for (const part of parts) {
    const reason = checkTag(part);
    if (reason !== undefined) {
      return { reason: `${reason} (${JSON.stringify(part.slice(0, 40))})` };
    }
    if (!tags.includes(part)) {
      tags.push(part);
    }
  }
  if (tags.length > MAX_TAGS_PER_ASSET) {
    return { reason: `at most ${MAX_TAGS_PER_ASSET} tags are allowed, got ${tags.length}` };
  }
  return { tags };
}
