import { createApiClient } from '../client/index.ts';

const api = createApiClient({ baseUrl: 'http://127.0.0.1:3000' }); // refreshes expired tokens itself
await api.login('admin@example.com', 'an admin passphrase');
const { data, error } = await api.GET('/users', { params: { query: { limit: 10 } } });
if (error) console.error(error.error.code, error.error.message);
else console.log(data.items.map((user) => user.email));
