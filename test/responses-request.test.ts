import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../src/http/api-error.ts';
import { parseCreateRequest } from '../src/responses/request.ts';

function rejection(body: unknown): { code: string; param: string | null; status: number } {
  try {
    parseCreateRequest(body);
  } catch (err) {
    if (err instanceof ApiError) return { code: err.code, param: err.param, status: err.status };
    throw err;
  }
  throw new Error('accepted');
}

describe('POST /v1/responses request parsing', () => {
  it('turns a string into one user message and applies the defaults', () => {
    expect(parseCreateRequest({ input: 'Hello' })).toEqual({
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] }],
      stream: true,
      instructions: null,
      conversationId: null,
      projectId: null,
      previousResponseId: null,
      temperature: null,
      topP: null,
      maxOutputTokens: null,
      metadata: {},
      responseFormat: undefined,
      tools: [],
      toolChoice: 'auto',
      parallelToolCalls: true,
      toolSet: { builtins: null, functions: [], choice: 'auto', parallel: true, echo: [], asked: false },
      includeRouting: false,
      reasoningEffort: null,
      store: true,
    });
  });

  it('accepts items with string or part content, and roles defaulting to user', () => {
    const r = parseCreateRequest({
      input: [
        { content: 'plain' },
        { role: 'assistant', type: 'message', content: [{ type: 'output_text', text: 'earlier answer' }] },
        { role: 'developer', content: [{ type: 'input_text', text: 'be short' }, { type: 'input_text', text: 'and kind' }] },
      ],
      stream: false,
    });
    expect(r.input.map((m) => (m.type === 'message' ? m.role : m.type))).toEqual(['user', 'assistant', 'developer']);
    expect(r.input[2]).toMatchObject({ type: 'message', content: [{ text: 'be short' }, { text: 'and kind' }] });
    expect(r.stream).toBe(false);
  });

  it('ignores fields it does not know and accepts the OpenAI fields', () => {
    const r = parseCreateRequest({
      input: 'x',
      model: 'gpt-5-ultra',
      some_future_field: { deep: true },
      temperature: 0.2,
      top_p: 0.9,
      max_output_tokens: 100,
      metadata: { team: 'audit' },
      store: false,
      user: 'u-1',
      tools: [{ type: 'web_search' }],
      tool_choice: 'none',
      parallel_tool_calls: false,
      reasoning: { effort: 'high' },
      text: { format: { type: 'json_schema', name: 'answer', schema: { type: 'object' }, strict: true } },
      stream_options: { include_routing: true },
    });
    expect(r).toMatchObject({
      temperature: 0.2,
      topP: 0.9,
      maxOutputTokens: 100,
      metadata: { team: 'audit' },
      toolChoice: 'none',
      parallelToolCalls: false,
      includeRouting: true,
      reasoningEffort: 'high',
      tools: [{ type: 'web_search' }],
      toolSet: { builtins: ['web_search'], choice: 'none', asked: true },
      responseFormat: { type: 'json_schema', name: 'answer', schema: { type: 'object' }, strict: true },
    });
    expect(parseCreateRequest({ input: 'x', text: { format: { type: 'json_object' } } }).responseFormat).toEqual({ type: 'json_object' });
    expect(parseCreateRequest({ input: 'x', text: { format: { type: 'text' } } }).responseFormat).toBeUndefined();
  });

  it.each([
    ['no input', {}, 'input_required', 'input'],
    ['null input', { input: null }, 'input_required', 'input'],
    ['an empty string', { input: '' }, 'input_required', 'input'],
    ['blank text only', { input: [{ content: '   ' }] }, 'input_required', 'input'],
    ['an empty list', { input: [] }, 'input_required', 'input'],
    ['a number', { input: 42 }, 'invalid_input', 'input'],
    ['an unknown role', { input: [{ role: 'robot', content: 'x' }] }, 'invalid_role', 'input[0].role'],
    ['an unknown part type', { input: [{ content: [{ type: 'input_audio', input_audio: 'x' }] }] }, 'invalid_content_type', 'input[0].content[0].type'],
    ['a file part outside a user message', { input: [{ role: 'assistant', content: [{ type: 'input_text', text: 'see' }, { type: 'input_file', file_id: randomUUID() }] }] }, 'unsupported_content_type', 'input[0].content[1]'],
    ['a file part with inline data', { input: [{ content: [{ type: 'input_file', filename: 'a.txt', file_data: 'data:text/plain;base64,aGk=' }] }] }, 'unsupported_file_source', 'input[0].content[0]'],
    ['a file part without file_id', { input: [{ content: [{ type: 'input_file' }] }] }, 'missing_file_id', 'input[0].content[0].file_id'],
    ['a non-boolean stream', { input: 'x', stream: 'yes' }, 'invalid_stream', 'stream'],
    ['a malformed project_id', { input: 'x', project_id: 'abc' }, 'invalid_uuid', 'project_id'],
    ['a conversation_id that is not text', { input: 'x', conversation_id: 42 }, 'invalid_conversation_id', 'conversation_id'],
    ['an empty previous_response_id', { input: 'x', previous_response_id: '' }, 'invalid_previous_response_id', 'previous_response_id'],
    ['conversation and conversation_id that differ', { input: 'x', conversation: { id: 'a' }, conversation_id: 'b' }, 'conversation_mismatch', 'conversation'],
    ['an item type the server does not know', { input: [{ type: 'computer_call', id: 'x' }] }, 'unsupported_input_item', 'input[0].type'],
    ['a function_call_output without call_id', { input: [{ type: 'function_call_output', output: 'x' }] }, 'invalid_call_id', 'input[0].call_id'],
    ['an item_reference without id', { input: [{ type: 'item_reference' }] }, 'invalid_input', 'input[0].id'],
    ['temperature above 2', { input: 'x', temperature: 3 }, 'invalid_temperature', 'temperature'],
    ['top_p above 1', { input: 'x', top_p: 1.5 }, 'invalid_top_p', 'top_p'],
    ['max_output_tokens of 0', { input: 'x', max_output_tokens: 0 }, 'invalid_max_output_tokens', 'max_output_tokens'],
    ['17 metadata pairs', { input: 'x', metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'invalid_metadata', 'metadata'],
    ['a metadata value that is not a string', { input: 'x', metadata: { a: 1 } }, 'invalid_metadata', 'metadata.a'],
    ['an unknown text format', { input: 'x', text: { format: { type: 'yaml' } } }, 'invalid_text_format', 'text.format.type'],
    ['instructions that are not text', { input: 'x', instructions: ['a'] }, 'invalid_instructions', 'instructions'],
    ['a non-string model', { input: 'x', model: 5 }, 'invalid_model', 'model'],
  ])('rejects %s with 400 %s', (_name, body, code, param) => {
    expect(rejection(body)).toEqual({ code, param, status: 400 });
  });

  it('rejects a body that is not an object', () => {
    expect(rejection([1, 2])).toMatchObject({ code: 'invalid_json', status: 400 });
    expect(rejection('text')).toMatchObject({ code: 'invalid_json', status: 400 });
  });
});

describe('tools, tool_choice and parallel_tool_calls', () => {
  const params = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };

  it('reads function tools in the Responses and the Chat Completions shapes, and built-ins by type', () => {
    const r = parseCreateRequest({
      input: 'x',
      tools: [
        { type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: params, strict: true },
        { type: 'function', function: { name: 'get_time', parameters: params } },
        { type: 'web_search_preview' },
        { type: 'calculator' },
      ],
      tool_choice: { type: 'function', name: 'get_time' },
    });
    expect(r.toolSet).toEqual({
      builtins: ['web_search', 'calculator'],
      functions: [
        { name: 'get_weather', description: 'Weather of a city', parameters: params, strict: true },
        { name: 'get_time', description: '', parameters: params, strict: undefined },
      ],
      choice: { name: 'get_time' },
      parallel: true,
      echo: [
        { type: 'web_search' },
        { type: 'calculator' },
        { type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: params, strict: true },
        { type: 'function', name: 'get_time', description: '', parameters: params, strict: null },
      ],
      asked: true,
    });
    expect(parseCreateRequest({ input: 'x', tool_choice: { type: 'calculator' } }).toolSet.choice).toEqual({ name: 'calculator' });
  });

  it.each([
    ['a tool type the server does not have', { tools: [{ type: 'code_interpreter' }] }, 'unsupported_tool', 'tools[0].type'],
    ['a function without a name', { tools: [{ type: 'function', parameters: params }] }, 'invalid_tools', 'tools[0].name'],
    ['a function name with spaces', { tools: [{ type: 'function', name: 'get weather' }] }, 'invalid_tools', 'tools[0].name'],
    ['a function named like a built-in', { tools: [{ type: 'function', name: 'calculator' }] }, 'invalid_tools', 'tools[0].name'],
    ['two functions of one name', { tools: [{ type: 'function', name: 'f' }, { type: 'function', name: 'f' }] }, 'invalid_tools', 'tools[1].name'],
    ['a tool_choice of another shape', { tool_choice: 'sometimes' }, 'invalid_tool_choice', 'tool_choice'],
    ['a tool_choice naming an unknown function', { tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'function', name: 'g' } }, 'invalid_tool_choice', 'tool_choice.name'],
  ])('rejects %s with 400 %s', (_name, extra, code, param) => {
    expect(rejection({ input: 'x', ...extra })).toEqual({ code, param, status: 400 });
  });
});
