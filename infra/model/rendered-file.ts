/** A file a renderer produces for a service, as every target writes it. */
export interface RenderedFile {
  /** Relative to the unit's directory. */
  path: string;
  content: string;
  mode?: number;
}
