import { z } from 'zod';
import { storableString } from '../http/text.ts';
import { imageUrl } from '../images/fetch.ts';
import { ImageFailure, parseDataUrl } from '../images/source.ts';
import type { ImageDetail } from '../providers/types.ts';

/**
 * The items of a request's `input` list, in OpenAI's shapes: messages (the
 * default when `type` is absent), the client's own `function_call` and
 * `function_call_output` items when it continues after running a function,
 * and `item_reference`s to items of its earlier responses.
 */

const MAX_PARTS = 256;
/** Ids, call ids and names are short everywhere; a megabyte of id is an attack, not a client. */
const MAX_ID = 128;

export type InputRole = 'user' | 'assistant' | 'system' | 'developer';

export interface TextPart {
  type: 'input_text' | 'output_text';
  text: string;
}

/** An uploaded file in a message: stored by reference, its text read when a prompt is built. */
export interface FilePart {
  type: 'input_file';
  file_id: string;
  /** Filled in from the file when the request is prepared. */
  filename?: string;
}

/**
 * An image in a message. A request names it by `image_url` (http(s) or a
 * base64 data URL) or by `file_id`; stored, it is a reference: the file id,
 * the http(s) URL, or for a data URL only its type, size and SHA-256 (the
 * bytes are not kept in the conversation).
 */
export interface ImagePart {
  type: 'input_image';
  detail: ImageDetail;
  file_id?: string | undefined;
  image_url?: string | undefined;
  /** Filled in once the bytes are read. */
  media_type?: string | undefined;
  bytes?: number | undefined;
  sha256?: string | undefined;
  /** Where the part sits in the request, for errors; never stored. */
  param?: string | undefined;
}

export type MessagePart = TextPart | FilePart | ImagePart;

/** A part's own text: a file or image part has none (its file's text goes into prompts, not into the message). */
export const partText = (p: MessagePart) => (p.type === 'input_file' || p.type === 'input_image' ? '' : p.text);

export interface InputMessage {
  type: 'message';
  role: InputRole;
  /** The parts, as stored in the conversation. */
  content: MessagePart[];
}

export interface InputCall {
  type: 'function_call';
  callId: string;
  name: string;
  arguments: string;
  /** A server tool's result, when a client sends back one of our own `function_call` items. */
  output?: string | undefined;
}

export interface InputCallOutput {
  type: 'function_call_output';
  callId: string;
  output: string;
}

export interface InputReference {
  type: 'item_reference';
  id: string;
}

export type InputItem = InputMessage | InputCall | InputCallOutput | InputReference;
/** An input item with its references resolved. */
export type ResolvedItem = Exclude<InputItem, InputReference>;

const textPart = z.object({ type: z.enum(['input_text', 'output_text']), text: storableString() });
const filePart = z.object({
  type: z.literal('input_file'),
  file_id: storableString().max(MAX_ID).optional(),
  filename: storableString().max(1024).optional(),
  file_data: z.string().optional(),
  file_url: z.string().optional(),
});
/** A data URL may be as long as the body limit allows; the image's own size limit is checked when it is read. */
const imagePart = z.object({
  type: z.literal('input_image'),
  image_url: storableString().min(1).nullish(),
  file_id: storableString().max(MAX_ID).nullish(),
  detail: z.enum(['low', 'high', 'auto']).nullish(),
});
const part = z.discriminatedUnion('type', [textPart, filePart, imagePart]);
const id = storableString().min(1).max(MAX_ID);

const message = z.object({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']).default('user'),
  content: z.union([storableString(), z.array(part).max(MAX_PARTS)]),
});

const functionCall = z.object({
  type: z.literal('function_call'),
  call_id: id,
  name: storableString().min(1).max(64),
  arguments: storableString(),
  output: storableString().optional(),
});

const functionCallOutput = z.object({
  type: z.literal('function_call_output'),
  call_id: id,
  output: z.union([storableString(), z.array(textPart).max(MAX_PARTS)]),
});

const itemReference = z.object({ type: z.literal('item_reference'), id });

/** One issue of an input item, with its path from `input`. */
export type ItemIssue = z.core.$ZodIssue;

/** A problem the route answers with its own code, not a schema message. */
export class UnsupportedItem {
  constructor(
    readonly param: string,
    readonly code: string,
    readonly message: string,
  ) {}
}

type Parsed = InputItem | ItemIssue[] | UnsupportedItem;

/** Parses one item of `input`; issues carry the full path (`input[i]…`). */
export function parseInputItem(raw: unknown, i: number): Parsed {
  const type = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as { type?: unknown }).type : undefined;
  const issues = (error: z.ZodError) => error.issues.map((issue) => ({ ...issue, path: ['input', i, ...issue.path] }));
  switch (type ?? 'message') {
    case 'message': {
      const parsed = message.safeParse(raw);
      if (!parsed.success) return issues(parsed.error);
      const v = parsed.data;
      const content = typeof v.content === 'string' ? [{ type: 'input_text' as const, text: v.content }] : v.content;
      const parts: MessagePart[] = [];
      for (const [j, p] of content.entries()) {
        const param = `input[${i}].content[${j}]`;
        if (p.type === 'input_image') {
          const image = imagePartOf(p, param, v.role);
          if (image instanceof UnsupportedItem) return image;
          parts.push(image);
          continue;
        }
        if (p.type !== 'input_file') {
          parts.push(p);
          continue;
        }
        if (v.role !== 'user') return new UnsupportedItem(param, 'unsupported_content_type', `${param}: input_file parts belong in user messages`);
        if (p.file_data !== undefined || p.file_url !== undefined) {
          return new UnsupportedItem(
            param,
            'unsupported_file_source',
            `${param}: file_data and file_url are not supported; upload the file with POST /v1/files and send {type:"input_file", file_id}`,
          );
        }
        if (p.file_id === undefined) return new UnsupportedItem(`${param}.file_id`, 'missing_file_id', `${param}: an input_file part needs a file_id`);
        parts.push({ type: 'input_file', file_id: p.file_id });
      }
      return { type: 'message', role: v.role, content: parts };
    }
    case 'function_call': {
      const parsed = functionCall.safeParse(raw);
      if (!parsed.success) return issues(parsed.error);
      const v = parsed.data;
      return { type: 'function_call', callId: v.call_id, name: v.name, arguments: v.arguments, output: v.output };
    }
    case 'function_call_output': {
      const parsed = functionCallOutput.safeParse(raw);
      if (!parsed.success) return issues(parsed.error);
      const v = parsed.data;
      return { type: 'function_call_output', callId: v.call_id, output: typeof v.output === 'string' ? v.output : v.output.map((p) => p.text).join('\n') };
    }
    case 'item_reference': {
      const parsed = itemReference.safeParse(raw);
      if (!parsed.success) return issues(parsed.error);
      return { type: 'item_reference', id: parsed.data.id };
    }
    default:
      return new UnsupportedItem(
        `input[${i}].type`,
        'unsupported_input_item',
        `input[${i}]: item type ${JSON.stringify(type)} is not supported; use message, function_call, function_call_output or item_reference`,
      );
  }
}

/** The longest http(s) image URL taken. */
const MAX_URL = 8192;

/** An `input_image` part, checked for form: one source, a URL of a kind that is fetched, a well-formed data URL of an image type. */
function imagePartOf(p: z.infer<typeof imagePart>, param: string, role: InputRole): ImagePart | UnsupportedItem {
  if (role !== 'user') return new UnsupportedItem(param, 'unsupported_content_type', `${param}: input_image parts belong in user messages`);
  const detail = p.detail ?? 'auto';
  const url = p.image_url ?? undefined;
  const fileId = p.file_id ?? undefined;
  if ((url === undefined) === (fileId === undefined)) {
    return new UnsupportedItem(param, 'invalid_image_source', `${param}: an input_image part needs exactly one of image_url and file_id`);
  }
  if (fileId !== undefined) return { type: 'input_image', detail, file_id: fileId, param };
  const where = `${param}.image_url`;
  const failure = url!.startsWith('data:') ? dataUrlProblem(url!) : url!.length > MAX_URL ? new ImageFailure('invalid_image_url', `the URL is longer than ${MAX_URL} characters`) : imageUrlProblem(url!);
  if (failure !== undefined) return new UnsupportedItem(where, failure.code, `${where}: ${failure.message}`);
  return { type: 'input_image', detail, image_url: url, param };
}

const dataUrlProblem = (url: string) => {
  const parsed = parseDataUrl(url);
  return parsed instanceof ImageFailure ? parsed : undefined;
};

const imageUrlProblem = (url: string) => {
  const parsed = imageUrl(url);
  return parsed instanceof ImageFailure ? parsed : undefined;
};

/** A request must say something: some message text, an image, or a function's result, call or reference. */
export const hasSubstance = (items: InputItem[]) =>
  items.some((it) => it.type !== 'message' || it.content.some((p) => p.type === 'input_file' || p.type === 'input_image' || p.text.trim() !== ''));
