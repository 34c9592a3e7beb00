/** A UUID in its text form: the shape of every id this server makes for responses, conversations and projects. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Whether an id can be one of ours. Ids of another shape (OpenAI's `resp_…`)
 * are well-formed requests for something that does not exist here: a 404,
 * never a database error.
 */
export const isUuid = (id: string) => UUID.test(id);
